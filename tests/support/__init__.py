"""What the end-to-end tests share: a scripted origin, a real proxy process, a plain HTTP client."""
