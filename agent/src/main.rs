//! The `hc-agent` daemon entry point.
fn main() {
    println!("hc-agent {}", env!("CARGO_PKG_VERSION"));
}
