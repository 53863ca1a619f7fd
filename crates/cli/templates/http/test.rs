
#[test]
fn it_answers_http_on_host_sockets() {
    with_server(|port| {
        let (status, body) = get(port, "/");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(body.contains("Hello from {{name}}"), "{body}");
        let (status, body) = get(port, "/hello/world");
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, "Hello, world!\n");
        let (status, _) = get(port, "/nope");
        assert_eq!(status, "HTTP/1.1 404 Not Found");
    });
}
