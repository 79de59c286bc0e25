//! What the tools ask of the operating system beyond std: reverse name lookup and local time.

use std::ffi::CStr;
use std::net::IpAddr;

/// Host names and calendar time, replaceable in tests.
pub trait Environment {
    /// The name of `addr` (getnameinfo without flags: the numeric form when there is no name),
    /// or `None` when the lookup fails.
    fn host_name(&self, addr: IpAddr) -> Option<String>;
    /// "%FT%T" of Unix seconds in the local time zone.
    fn local_time(&self, secs: u32) -> Option<String>;
    /// The abbreviation of the local time zone at Unix seconds `secs` ("%Z"), when known.
    fn zone_name(&self, _secs: u32) -> Option<String> {
        None
    }
}

/// The real system: getnameinfo(3) and localtime_r(3).
#[derive(Debug, Clone, Copy, Default)]
pub struct System;

impl Environment for System {
    fn host_name(&self, addr: IpAddr) -> Option<String> {
        let mut host = [0 as libc::c_char; 1025];
        let rc = match addr {
            IpAddr::V4(v4) => {
                // SAFETY: an all-zero sockaddr_in is valid; the fields are then set.
                let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
                sa.sin_family = libc::AF_INET as libc::sa_family_t;
                sa.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
                // SAFETY: sa is a valid sockaddr_in of the given length and host a writable
                // buffer of the given length; getnameinfo NUL-terminates on success.
                unsafe {
                    libc::getnameinfo(
                        (&sa as *const libc::sockaddr_in).cast(),
                        std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                        host.as_mut_ptr(),
                        host.len() as libc::socklen_t,
                        std::ptr::null_mut(),
                        0,
                        0,
                    )
                }
            }
            IpAddr::V6(v6) => {
                // SAFETY: an all-zero sockaddr_in6 is valid; the fields are then set.
                let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
                sa.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sa.sin6_addr.s6_addr = v6.octets();
                // SAFETY: as above, for sockaddr_in6.
                unsafe {
                    libc::getnameinfo(
                        (&sa as *const libc::sockaddr_in6).cast(),
                        std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                        host.as_mut_ptr(),
                        host.len() as libc::socklen_t,
                        std::ptr::null_mut(),
                        0,
                        0,
                    )
                }
            }
        };
        if rc != 0 {
            return None;
        }
        // SAFETY: on success getnameinfo wrote a NUL-terminated string into host.
        let name = unsafe { CStr::from_ptr(host.as_ptr()) };
        Some(name.to_string_lossy().into_owned())
    }

    fn local_time(&self, secs: u32) -> Option<String> {
        let tm = local_tm(secs)?;
        Some(format!(
            "{}-{:02}-{:02}T{:02}:{:02}:{:02}",
            i64::from(tm.tm_year) + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec
        ))
    }

    fn zone_name(&self, secs: u32) -> Option<String> {
        let tm = local_tm(secs)?;
        if tm.tm_zone.is_null() {
            return None;
        }
        // SAFETY: localtime_r set tm_zone to a NUL-terminated string that lives as long as
        // the process's time zone data (it is not freed while the program runs).
        let zone = unsafe { CStr::from_ptr(tm.tm_zone) };
        Some(zone.to_string_lossy().into_owned())
    }
}

/// localtime_r(3) of Unix seconds.
fn local_tm(secs: u32) -> Option<libc::tm> {
    // time_t is 32 bits on some targets.
    #[allow(clippy::unnecessary_fallible_conversions)]
    let t = libc::time_t::try_from(secs).ok()?;
    // SAFETY: an all-zero tm is valid output storage for localtime_r.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: t and tm are valid for the duration of the call.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return None;
    }
    Some(tm)
}
