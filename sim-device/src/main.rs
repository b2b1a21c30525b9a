//! `sim-device`: the simulator entry point (demo, field-engineer commands,
//! fleet mode). Not built yet: see README.
fn main() {
    eprintln!("sim-device: the simulator is not built yet (see README.md)");
    std::process::exit(2);
}
