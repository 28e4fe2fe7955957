//! Small safe wrappers over raw FreeSWITCH pointers: C strings in and out, the read-locked
//! session guard, channel flags and variables.

use std::ffi::{c_char, CStr, CString};

use crate::ffi::freeswitch as fs;

/// Converts a possibly-NULL C string from FreeSWITCH into `&str` (lossy UTF-8 handling: invalid
/// input yields `None`, never a panic).
///
/// # Safety
/// `p` is NULL or points to a NUL-terminated string valid for `'a`.
pub unsafe fn opt_str<'a>(p: *const c_char) -> Option<&'a str> {
    if p.is_null() {
        return None;
    }
    // SAFETY: non-NULL and NUL-terminated for 'a per the caller's contract.
    unsafe { CStr::from_ptr(p) }.to_str().ok()
}

/// A `CString` from text we control or validated; interior NULs are replaced by `?` so this
/// never fails.
pub fn cstring(s: &str) -> CString {
    CString::new(s.replace('\0', "?")).unwrap_or_default()
}

/// A session found by uuid, read-locked; unlocked on drop.
pub struct LockedSession {
    ptr: *mut fs::switch_core_session_t,
}

impl LockedSession {
    /// `switch_core_session_locate(uuid)`.
    pub fn locate(uuid: &str) -> Option<Self> {
        let c = CString::new(uuid).ok()?;
        // SAFETY: `c` is a valid NUL-terminated string for the call; the shim returns a
        // read-locked session or NULL.
        let ptr = unsafe { fs::sp_fs_session_locate(c.as_ptr()) };
        // Not `then_some`: that would build (and drop, i.e. unlock) a guard for NULL.
        if ptr.is_null() {
            None
        } else {
            Some(Self { ptr })
        }
    }

    pub fn as_ptr(&self) -> *mut fs::switch_core_session_t {
        self.ptr
    }
}

impl Drop for LockedSession {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from a successful locate, which took exactly one read lock that we
        // release exactly once here.
        unsafe { fs::switch_core_session_rwunlock(self.ptr) };
    }
}

/// The session's channel.
///
/// # Safety
/// `session` is a live session (held by its own thread, a callback, or a read lock).
pub unsafe fn channel_of(session: *mut fs::switch_core_session_t) -> *mut fs::switch_channel_t {
    // SAFETY: per the caller's contract the session is alive.
    unsafe { fs::switch_core_session_get_channel(session) }
}

/// The session's uuid as an owned string.
///
/// # Safety
/// `session` is a live session.
pub unsafe fn uuid_of(session: *mut fs::switch_core_session_t) -> String {
    // SAFETY: live session; the uuid buffer lives as long as the session.
    unsafe { opt_str(fs::switch_core_session_get_uuid(session)) }
        .unwrap_or_default()
        .to_owned()
}

/// `switch_channel_test_flag`.
///
/// # Safety
/// `channel` belongs to a live session.
pub unsafe fn test_flag(
    channel: *mut fs::switch_channel_t,
    flag: fs::switch_channel_flag_t,
) -> bool {
    // SAFETY: live channel per the caller's contract.
    unsafe { fs::switch_channel_test_flag(channel, flag) != 0 }
}

/// A channel variable, copied out.
///
/// # Safety
/// `channel` belongs to a live session.
pub unsafe fn get_var(channel: *mut fs::switch_channel_t, name: &CStr) -> Option<String> {
    // SAFETY: live channel; the returned pointer is valid until the variable changes, and we
    // copy it at once.
    unsafe { opt_str(fs::sp_fs_channel_get_variable(channel, name.as_ptr())) }.map(str::to_owned)
}

/// Sets (or with `None` unsets) a channel variable.
///
/// # Safety
/// `channel` belongs to a live session.
pub unsafe fn set_var(channel: *mut fs::switch_channel_t, name: &CStr, value: Option<&str>) {
    let v = value.map(cstring);
    let vp = v.as_ref().map_or(std::ptr::null(), |v| v.as_ptr());
    // SAFETY: live channel; FreeSWITCH copies name and value.
    unsafe {
        fs::switch_channel_set_variable_var_check(channel, name.as_ptr(), vp, fs::SWITCH_TRUE)
    };
}

/// FreeSWITCH's "true" spellings (`switch_true`): yes/on/true/t/enabled/active/allow/1.
pub fn is_true(v: Option<&str>) -> bool {
    v.is_some_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        matches!(
            v.as_str(),
            "yes" | "on" | "true" | "t" | "enabled" | "active" | "allow"
        ) || v.parse::<i64>().is_ok_and(|n| n != 0)
    })
}

/// One of the module's core event bindings (`switch_event_bind_removable`, no subclass), kept
/// until [`EventBinding::unbind`] (module shutdown: no callback into an unloaded module).
pub struct EventBinding(std::sync::atomic::AtomicPtr<fs::switch_event_node_t>);

impl EventBinding {
    pub const fn new() -> Self {
        Self(std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()))
    }

    /// Binds `callback` to the core event `event`, once (a load after a forced unload that
    /// kept the module keeps the binding). False if FreeSWITCH refused it.
    pub fn bind(
        &self,
        event: fs::switch_event_types_t,
        callback: unsafe extern "C" fn(*mut fs::switch_event_t),
    ) -> bool {
        use std::sync::atomic::Ordering;
        if !self.0.load(Ordering::Acquire).is_null() {
            return true;
        }
        let mut node: *mut fs::switch_event_node_t = std::ptr::null_mut();
        // SAFETY: 'static id literal, no subclass, a 'static callback without user data;
        // `node` is a local out-parameter, kept until `unbind`.
        let st = unsafe {
            fs::switch_event_bind_removable(
                c"mod_secure_pay".as_ptr(),
                event,
                std::ptr::null(),
                Some(callback),
                std::ptr::null_mut(),
                &mut node,
            )
        };
        if st != fs::SWITCH_STATUS_SUCCESS {
            return false;
        }
        self.0.store(node, Ordering::Release);
        true
    }

    /// Removes the binding, if any (`switch_event_unbind` takes the event-node write lock, so
    /// no callback is still running when this returns).
    pub fn unbind(&self) {
        let mut node = self
            .0
            .swap(std::ptr::null_mut(), std::sync::atomic::Ordering::AcqRel);
        if !node.is_null() {
            // SAFETY: the node `bind` got from bind_removable, unbound once (swapped out).
            unsafe { fs::switch_event_unbind(&mut node) };
        }
    }
}
