//! A small HTTP/1.1 server on port 80, built on `morgana-http`: `GET /`
//! answers a fixed page, `POST /echo` answers the request's body, anything
//! else 404. Connections are kept alive and pipelined requests answered in
//! order; the limits come from the command line (`--http-max-body=...`).

#![no_std]
#![no_main]

use morgana_http::{Limits, Request, Response, Router, Server};
use morgana_net::Stack;

const PAGE: &str =
    "<!doctype html>\n<title>Morgana</title>\n<h1>Hello from a Morgana unikernel</h1>\n";

#[morgana::main]
async fn main(service: Stack) -> Result<(), morgana_net::Error> {
    let limits = match Limits::from_args() {
        Ok(l) => l,
        Err(e) => {
            morgana::println!("http-hello: {e}");
            morgana::exit(1);
        }
    };
    let router = Router::new()
        .get("/", |_: Request| async { Response::html(PAGE) })
        .post("/echo", |req: Request| async move {
            Response::ok(req.into_body()).with_header("Content-Type", "application/octet-stream")
        });
    let server = Server::new(router).with_limits(limits);
    log::info!("http-hello: listening on port 80");
    server.serve(&service, 80).await
}
