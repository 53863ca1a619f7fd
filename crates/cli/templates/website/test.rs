
#[test]
fn it_serves_every_file_of_the_site() {
    with_server(|port| {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("site");
        for (path, file) in [("/", "index.html"), ("/index.html", "index.html"), ("/style.css", "style.css")] {
            let (status, body) = get(port, path);
            assert_eq!(status, "HTTP/1.1 200 OK", "{path}");
            assert_eq!(body, std::fs::read_to_string(dir.join(file)).unwrap(), "{path}");
        }
        let (status, _) = get(port, "/missing.html");
        assert_eq!(status, "HTTP/1.1 404 Not Found");
    });
}
