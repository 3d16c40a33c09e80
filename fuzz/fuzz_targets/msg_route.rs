//! The REST binding's request matcher on arbitrary input: the first line is the method, the
//! rest the request target. A typed error or a route, never a panic; a key fetch route
//! rebuilds a target that parses to the same route.
#![no_main]

use e2m_msg::Route;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    let (method, target) = text.split_once('\n').unwrap_or(("GET", text));
    match Route::parse(method, target) {
        Ok(Route::FetchKey(request)) => {
            let rebuilt = request.to_target();
            assert_eq!(Route::parse("GET", &rebuilt), Ok(Route::FetchKey(request)));
        }
        Ok(_) => {}
        Err(e) => {
            let _ = (e.to_string(), e.cause());
        }
    }
});
