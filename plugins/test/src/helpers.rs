//! What every callback of the test plugin does first: injected faults and panics, switched
//! answers, traced calls.

use super::*;

impl Test {
    /// Fails or panics if a fault was injected into `callback` (at `offset`, for data
    /// requests).
    /// Whether `fail=` and `panic=` faults fire now (`faults_if=`).
    pub(crate) fn faults_armed(&self) -> bool {
        self.faults_if.as_ref().map_or(true, |path| path.exists())
    }

    pub(crate) fn check(&self, callback: &str, offset: Option<u64>) -> Result<()> {
        if !self.faults_armed() {
            return Ok(());
        }
        for fault in &self.faults {
            if fault.callback != callback || (fault.offset.is_some() && fault.offset != offset) {
                continue;
            }
            match fault.errno {
                None => panic!("test: injected panic in {callback}"),
                Some(errno) => {
                    return Err(Error::new(
                        errno,
                        format!("test: injected failure in {callback}"),
                    ))
                }
            }
        }
        Ok(())
    }

    /// For callbacks that cannot fail: only panics apply.
    pub(crate) fn check_panic(&self, callback: &str) {
        if self.faults_armed()
            && self
                .faults
                .iter()
                .any(|f| f.callback == callback && f.errno.is_none())
        {
            panic!("test: injected panic in {callback}");
        }
    }

    pub(crate) fn add_fault(&mut self, value: &str, panic: bool) -> Result<()> {
        let (rest, offset) = match value.rsplit_once('@') {
            Some((rest, offset)) => (
                rest,
                Some(
                    offset
                        .parse::<u64>()
                        .map_err(|_| Error::invalid(format!("test: bad offset in '{value}'")))?,
                ),
            ),
            None => (value, None),
        };
        let (callback, errno) = match (panic, rest.split_once(':')) {
            (true, None) => (rest, None),
            (true, Some(_)) => {
                return Err(Error::invalid(format!(
                    "test: panic= takes no errno: '{value}'"
                )))
            }
            (false, Some((callback, name))) => (callback, Some(errno_by_name(name)?)),
            (false, None) => (rest, Some(Errno::EIO)),
        };
        if !rustshim_plugin_api::abi::CALLBACK_NAMES.contains(&callback) {
            return Err(Error::invalid(format!(
                "test: '{callback}' is not a callback"
            )));
        }
        self.faults.push(Fault {
            callback: callback.to_owned(),
            errno,
            offset,
        });
        Ok(())
    }

    pub(crate) fn data_call(&self, callback: &str, line: String, offset: u64) -> Result<()> {
        self.trace.line(line);
        self.rate_fault(callback, offset)?;
        self.check(callback, Some(offset))
    }

    /// Applies the `fail_rate=`/`panic_rate=` faults of `callback` to the request keyed `key`
    /// (its offset; for callbacks without one, a call counter), tracing each injection.
    pub(crate) fn rate_fault(&self, callback: &str, key: u64) -> Result<()> {
        for fault in self.rate_faults.iter().filter(|f| f.callback == callback) {
            if injected(callback, key, fault.probability) {
                self.trace.line(format!("injected {callback} at {key}"));
                match fault.errno {
                    None => panic!("test: injected panic in {callback} at {key}"),
                    Some(errno) => {
                        return Err(Error::new(
                            errno,
                            format!("test: injected failure in {callback} at {key}"),
                        ))
                    }
                }
            }
        }
        Ok(())
    }

    /// A new key for a request without an offset.
    pub(crate) fn next_call(counter: &std::sync::atomic::AtomicU64) -> u64 {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// `fail_rate=CALLBACK:PROBABILITY[:ERRNO]` or `panic_rate=CALLBACK:PROBABILITY`.
    pub(crate) fn add_rate_fault(&mut self, key: &str, value: &str, panic: bool) -> Result<()> {
        let mut parts = value.splitn(3, ':');
        let (Some(callback), Some(probability)) = (parts.next(), parts.next()) else {
            return Err(Error::invalid(format!(
                "test: {key} must be CALLBACK:PROBABILITY[:ERRNO]"
            )));
        };
        let errno = match (panic, parts.next()) {
            (true, None) => None,
            (true, Some(_)) => return Err(Error::invalid(format!("test: {key} takes no errno"))),
            (false, Some(name)) => Some(errno_by_name(name)?),
            (false, None) => Some(Errno::EIO),
        };
        self.rate_faults.push(RateFault {
            callback: callback.to_owned(),
            probability: server::parse_probability(key, probability)?,
            errno,
        });
        Ok(())
    }

    pub(crate) fn capability<T>(&self, callback: &str, answer: T) -> Result<T> {
        self.trace.line(callback);
        self.check(callback, None)?;
        Ok(answer)
    }

    /// Traces the functions about the client where there is no client.
    pub(crate) fn trace_outside_a_connection(&self) {
        self.trace.line(format!(
            "outside: export_name = {}",
            show(&server::export_name())
        ));
        self.trace
            .line(format!("outside: is_tls = {}", show(&server::is_tls())));
        self.trace.line(format!(
            "outside: peer_pid = {}",
            show(&server::peer_pid().map(|p| p.as_raw()))
        ));
        self.trace.line(format!(
            "outside: peer_name = {}",
            show(&server::peer_name().map(|a| a.to_string()))
        ));
    }

    pub(crate) fn on_pread(&self, action: OnPread) -> Result<()> {
        match action {
            OnPread::Shutdown => {
                server::shutdown();
                self.trace.line("shutdown()");
            }
            OnPread::Disconnect { force } => {
                let r = server::disconnect(force);
                self.trace
                    .line(format!("disconnect({force}) = {}", show(&r)));
            }
            OnPread::Sleep(d) => {
                let r = server::nanosleep(d);
                self.trace.line(format!("nanosleep({d:?}) = {}", show(&r)));
                r?;
            }
        }
        Ok(())
    }
}
