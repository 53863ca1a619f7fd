//! {{name}}: a Morgana unikernel serving HTTP/1.1 with `morgana-http`:
//! `GET /` answers a page, `GET /hello/NAME` a greeting, anything else 404.
//! It listens on `--port=N` (default 8080) of the stack `service`.

#![no_std]
#![no_main]

extern crate alloc;

use morgana_http::{Limits, Request, Response, Router, Server};
use morgana_net::{Stack, TcpListener};

const PAGE: &str = "<!doctype html>\n<title>{{name}}</title>\n<h1>Hello from {{name}}</h1>\n";

/// The `--port=N` argument, 8080 without one.
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
    let router = Router::new()
        .get("/", |_: Request| async { Response::html(PAGE) })
        .get("/hello/*", |r: Request| async move {
            let who = r.path().trim_start_matches("/hello/");
            Response::text(alloc::format!("Hello, {who}!\n"))
        });
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
