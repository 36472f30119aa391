//! The build script of every crate with embedded migrations (`build = "../service-runtime/
//! build-migrations.rs"` in its Cargo.toml): rebuilds the crate when a migration changes, since
//! `sqlx::migrate!` embeds them and cargo would not otherwise notice a new file.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
