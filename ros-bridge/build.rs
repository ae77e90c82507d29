//! With the `ros2` feature, link libpython into this package's binaries and tests: the ROS 2
//! wheels' message libraries need its symbols (ros-bridge/ros2/README.md, "libpython").
fn main() {
    println!("cargo:rerun-if-env-changed=ROS2_PRELOAD");
    if std::env::var_os("CARGO_FEATURE_ROS2").is_none() {
        return;
    }
    if let Ok(lib) = std::env::var("ROS2_PRELOAD") {
        if let Some(dir) = std::path::Path::new(&lib).parent() {
            println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
            println!("cargo:rustc-link-arg={lib}");
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
    }
}
