//! TEMP STUB
pub fn gethostname() -> std::io::Result<Vec<u8>> {
    Ok(b"vm".to_vec())
}
pub struct LocalTime {
    pub year: i32,
    pub month: u32,
    pub mday: u32,
    pub wday: u32,
    pub hour: u32,
    pub min: u32,
    pub sec: u32,
    pub gmtoff: i64,
    pub zone: Vec<u8>,
}
pub fn localtime(_s: i64) -> LocalTime {
    LocalTime {
        year: 2026,
        month: 10,
        mday: 27,
        wday: 5,
        hour: 1,
        min: 2,
        sec: 3,
        gmtoff: 0,
        zone: b"UTC".to_vec(),
    }
}
pub fn raise_nofile(want: u64) -> std::io::Result<u64> {
    Ok(want)
}
pub fn strerror(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    s.split(" (os error").next().unwrap().to_string()
}
