//! For the metrics test: an HTTP server on port 80 (`GET /` answers
//! "hello") and, enabled in one line, the metrics endpoint on port 9100.

#![no_std]
#![no_main]

use morgana_http::{Request, Response, Router, Server};
use morgana_net::Stack;

#[morgana::main]
async fn main(service: Stack) -> Result<(), morgana_net::Error> {
    morgana_metrics::spawn(&service, 9100);
    // Let the endpoint's task bind its port before saying we listen.
    morgana::yield_now().await;
    let router = Router::new().get("/", |_: Request| async { Response::text("hello\n") });
    morgana::println!("t-metrics: listening on ports 80 and 9100");
    Server::new(router).serve(&service, 80).await
}
