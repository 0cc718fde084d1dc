//! The workspace's own `uniffi-bindgen`: generates the Kotlin, Swift and Python bindings
//! from the built library (library mode), so the generator always matches the `uniffi`
//! version the library was built with. See docs/mobile.md for the commands.

fn main() {
    uniffi::uniffi_bindgen_main()
}
