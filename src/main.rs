//! The smtp-source command (see `smtp_source::main`).

fn main() {
    smtp_source::main()
}
