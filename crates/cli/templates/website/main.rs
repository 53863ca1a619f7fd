//! {{name}}: a Morgana unikernel serving the static site in `site/`,
//! baked into the image at build time, with `morgana-http`: each file at
//! its path (`/` is `index.html`), with a content type by extension;
//! anything else 404. It listens on `--port=N` (default 8080).
//!
//! Add a file to `site/` and a line to `FILES` below.

#![no_std]
#![no_main]

use morgana_http::{Limits, Request, Response, Router, Server};
use morgana_net::{Stack, TcpListener};

/// The site: path, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    ("/", "text/html; charset=utf-8", include_bytes!("../site/index.html")),
    ("/index.html", "text/html; charset=utf-8", include_bytes!("../site/index.html")),
    ("/style.css", "text/css", include_bytes!("../site/style.css")),
];

fn port() -> Option<u16> {
    match morgana::args().find_map(|a| a.strip_prefix("--port=")) {
        Some(p) => p.parse().ok().filter(|&p| p != 0),
        None => Some(8080),
    }
}

#[morgana::main]
async fn main(service: Stack) -> Result<(), morgana_net::Error> {
    let Some(port) = port() else {
        morgana::println!("{{name}}: --port needs a number from 1 to 65535");
        morgana::exit(1);
    };
    let limits = match Limits::from_args() {
        Ok(l) => l,
        Err(e) => {
            morgana::println!("{{name}}: {e}");
            morgana::exit(1);
        }
    };
    let mut router = Router::new();
    for &(path, ty, body) in FILES {
        router = router.get(path, move |_: Request| async move {
            Response::ok(body).with_header("Content-Type", ty)
        });
    }
    let server = Server::new(router).with_limits(limits);
    // Bound before saying so: a client that waits for the line can connect.
    let listener = TcpListener::bind(&service, port)?;
    log::info!("{{name}}: listening on port {port}");
    loop {
        let (mut stream, peer) = listener.accept().await?;
        let server = server.clone();
        morgana::spawn(async move {
            server.serve_connection(&mut stream, Some(peer)).await;
            // The answer goes out before the FIN; a peer that never closes
            // its side is dropped after the write timeout.
            let _ = morgana::timeout(server.limits().write_timeout, stream.close()).await;
        });
    }
}
