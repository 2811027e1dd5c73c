//! `.wasmflow/runs/<run-id>/`: everything a run leaves behind.
//!
//! The directory is created 0700 and its files 0600, and it is opened as a
//! `cap_std` capability: the journal writer holds a handle to this one
//! directory and can create, write or rename nothing outside it.
//!
//! - `run.json`: what ran (the [`RunSpec`], script path and hash, args),
//!   status, timestamps, the result and summary; replaced by temp file +
//!   rename. Runs written before the spec existed carry `flags` instead.
//! - `journal.jsonl`: one line per agent event ([`crate::run::journal`]).
//! - `agents.jsonl`: one record per finished agent: prompt, options,
//!   output, usage and timing (for people; the journal is what a resume
//!   reads). One file, appended per batch: a file per agent cost more than
//!   the journal's fsync.
//! - `stop`: present when `wasmflow stop` asked the run to pause.
//! - `run.lock`: the process running the run holds an exclusive `flock`
//!   on it; a run whose status says running while the lock is free was
//!   interrupted (killed, out of memory, a reboot).
//! - `events.jsonl`: every event, one JSON line each ([`crate::run::events`]);
//!   past [`EVENTS_ROTATE_BYTES`] it is renamed `events.1.jsonl` (one
//!   generation kept) and a new one started.
//! - `scripts/<sha256>.js`: every script a session ran, kept so a moved
//!   file does not stop a resume and viewers can show it.
//! - `result.json`: the result, compact, written when the run ends ok.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use cap_std::ambient_authority;
use cap_std::fs::{Dir, DirBuilder, DirBuilderExt, File, OpenOptions, OpenOptionsExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::run::journal::{ReadJournal, Record};
use crate::run::spec::RunSpec;

const INFO: &str = "run.json";
const JOURNAL: &str = "journal.jsonl";
const AGENTS: &str = "agents.jsonl";
const STOP: &str = "stop";
const LOCK: &str = "run.lock";
/// The events file of a run.
pub const EVENTS: &str = "events.jsonl";
/// The previous events file, after a rotation.
pub const EVENTS_OLD: &str = "events.1.jsonl";
/// Size past which `events.jsonl` is rotated.
pub const EVENTS_ROTATE_BYTES: u64 = 64 << 20;
const RESULT: &str = "result.json";

/// `run.json`. Missing fields take their defaults: a hand-edited or older
/// file still opens.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RunInfo {
    /// The run id.
    pub id: String,
    /// `meta.name`, else the script's file stem.
    pub name: String,
    /// The script (or component) it runs.
    pub script_path: PathBuf,
    /// SHA-256 of the script the last session ran.
    pub script_sha256: String,
    /// The value the script saw as `args`.
    pub args: Value,
    /// What ran, to run it again the same way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec: Option<RunSpec>,
    /// HMAC-SHA256 of `spec` under the user's key ([`crate::run::seal`]):
    /// a resume runs only a spec its owner wrote.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spec_hmac: Option<String>,
    /// Runs written before the spec existed: the `run` flags (args apart).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// `running`, `paused`, `ok`, `script_error`, `limit`, `bad_input`,
    /// `internal_error`.
    pub status: String,
    /// The process of the session now running (for `stop` and `runs`).
    pub pid: u32,
    /// Created (ms since the epoch).
    pub created_ms: u64,
    /// Last updated.
    pub updated_ms: u64,
    /// Sessions that ran it (1, then one more per resume).
    pub sessions: u32,
    /// The result, when it finished.
    pub result: Option<Value>,
    /// The last session's `--json` summary.
    pub summary: Option<Value>,
}

/// The exclusive lock of the process running a run; released when dropped
/// (or when the process dies, however it dies).
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The UTC calendar date and time of `ms` since the epoch: (year, month,
/// day, hours, minutes, seconds).
pub fn utc(ms: u64) -> (i64, i64, i64, u64, u64, u64) {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem / 60 % 60, rem % 60)
}

/// `YYYYMMDD-HHMMSS-xxxx` (UTC), sortable by start time.
pub fn new_run_id() -> String {
    let ms = now_ms();
    let (y, m, d, hh, mm, ss) = utc(ms);
    let noise = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(ms);
        h.write_u32(std::process::id());
        h.finish() & 0xffff
    };
    format!("{y:04}{m:02}{d:02}-{hh:02}{mm:02}{ss:02}-{noise:04x}")
}

/// Where runs live: `$WASMFLOW_RUNS_DIR`, else `.wasmflow/runs` in the
/// working directory. Not an ancestor's: a run started in a subdirectory
/// must not land in whatever `.wasmflow` happens to sit above it.
pub fn runs_root(cwd: &Path) -> PathBuf {
    match std::env::var_os("WASMFLOW_RUNS_DIR") {
        Some(dir) if !dir.is_empty() => cwd.join(dir),
        _ => cwd.join(".wasmflow/runs"),
    }
}

/// A run id is a plain name: no separators, no `..`.
pub fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not a run id (they look like 20261125-142300-a1b2; `wasmflow runs` lists them)"
        ))
    }
}

fn private_dir() -> DirBuilder {
    let mut b = DirBuilder::new();
    b.recursive(true).mode(0o700);
    b
}

fn private_file(append: bool) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.write(true).create(true).mode(0o600);
    if append {
        o.append(true);
    } else {
        o.truncate(true);
    }
    o
}

/// An open run directory.
pub struct RunDir {
    /// The run id.
    pub id: String,
    /// Where the directory is.
    pub path: PathBuf,
    dir: Dir,
}

impl RunDir {
    /// Creates `root/id` (0700) and makes its entry durable.
    pub fn create(root: &Path, id: &str) -> io::Result<RunDir> {
        check_id(id).map_err(io::Error::other)?;
        std::fs::create_dir_all(root)?;
        // Runs hold prompts and outputs: keep them out of commits.
        let ignore = root.join(".gitignore");
        if !ignore.exists() {
            let _ = std::fs::write(&ignore, "*\n");
        }
        let parent = Dir::open_ambient_dir(root, ambient_authority())?;
        parent.create_dir_with(id, &private_dir())?;
        let dir = parent.open_dir(id)?;
        // The new entry in `runs/` must survive a crash too.
        sync_dir(&parent)?;
        Ok(RunDir {
            id: id.to_string(),
            path: root.join(id),
            dir,
        })
    }

    /// Opens an existing run.
    pub fn open(root: &Path, id: &str) -> Result<RunDir, String> {
        check_id(id)?;
        let path = root.join(id);
        let dir = Dir::open_ambient_dir(&path, ambient_authority()).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                format!(
                    "no run `{id}` in {} (`wasmflow runs` lists them)",
                    root.display()
                )
            } else {
                format!("cannot open {}: {e}", path.display())
            }
        })?;
        Ok(RunDir {
            id: id.to_string(),
            path,
            dir,
        })
    }

    /// Replaces `run.json` atomically: a crash leaves the old or the new.
    pub fn write_info(&self, info: &RunInfo) -> io::Result<()> {
        let text = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
        let tmp = format!("{INFO}.tmp");
        let mut f = self.dir.open_with(&tmp, &private_file(false))?;
        f.write_all(&text)?;
        f.sync_data()?;
        drop(f);
        self.dir.rename(&tmp, &self.dir, INFO)?;
        sync_dir(&self.dir)
    }

    /// Reads `run.json`.
    pub fn read_info(&self) -> Result<RunInfo, String> {
        let text = self
            .dir
            .read_to_string(INFO)
            .map_err(|e| format!("cannot read {}/{INFO}: {e}", self.path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{}/{INFO} is damaged: {e}", self.path.display()))
    }

    /// Reads the journal (missing: empty).
    pub fn read_journal(&self) -> Result<ReadJournal, String> {
        match self.dir.read(JOURNAL) {
            Ok(bytes) => Ok(crate::run::journal::parse(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ReadJournal::default()),
            Err(e) => Err(format!(
                "cannot read {}/{JOURNAL}: {e}",
                self.path.display()
            )),
        }
    }

    /// Opens the journal for appending, first cutting a torn last line
    /// (`valid_len` from [`Self::read_journal`]).
    pub fn journal_writer(&self, valid_len: u64) -> io::Result<JournalWriter> {
        let file = self.dir.open_with(JOURNAL, &private_file(true))?;
        if file.metadata()?.len() > valid_len {
            file.set_len(valid_len)?;
        }
        Ok(JournalWriter {
            file,
            buffer: Vec::new(),
        })
    }

    /// Appends agent records to `agents.jsonl` (not synced).
    pub fn append_agents(&self, records: &[(u64, Value)]) -> io::Result<()> {
        let mut text = Vec::new();
        for (_, record) in records {
            serde_json::to_writer(&mut text, record).map_err(io::Error::other)?;
            text.push(b'\n');
        }
        self.dir
            .open_with(AGENTS, &private_file(true))?
            .write_all(&text)
    }

    /// Keeps an agent's whole output when it was over the size bound:
    /// `outputs/<id>.txt`; returns its path.
    pub fn write_output(&self, id: u64, text: &str) -> io::Result<PathBuf> {
        self.dir.create_dir_with("outputs", &private_dir())?;
        let name = format!("outputs/{id}.txt");
        self.dir
            .open_with(&name, &private_file(false))?
            .write_all(text.as_bytes())?;
        Ok(self.path.join(name))
    }

    /// Takes the run's lock: `None` when another process holds it (the run
    /// is running there).
    pub fn try_lock(&self) -> io::Result<Option<RunLock>> {
        let file = self.dir.open_with(LOCK, &private_file(true))?.into_std();
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let r = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if r == 0 {
            return Ok(Some(RunLock { _file: file }));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(e)
        }
    }

    /// Whether a process holds the run's lock (is running it now).
    pub fn is_locked(&self) -> bool {
        let Ok(file) = self.dir.open(LOCK).map(|f| f.into_std()) else {
            return false;
        };
        // SAFETY: as in try_lock; a shared lock taken here is released at
        // once when `file` closes.
        let r = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                libc::LOCK_SH | libc::LOCK_NB,
            )
        };
        r != 0
    }

    /// The status a viewer should show: `interrupted` when run.json says
    /// running but no process holds the lock.
    pub fn status(&self, info: &RunInfo) -> String {
        if info.status == "running" && !self.is_locked() {
            // The process may have written its end and let go of the lock
            // between `info` being read and the lock being looked at: what
            // run.json says now decides.
            match self.read_info() {
                Ok(fresh) if fresh.status != "running" => fresh.status,
                _ => "interrupted".into(),
            }
        } else {
            info.status.clone()
        }
    }

    /// Keeps the script a session runs: `scripts/<sha256>.js`.
    pub fn keep_script(&self, sha256: &str, source: &str) -> io::Result<PathBuf> {
        self.dir.create_dir_with("scripts", &private_dir())?;
        let name = format!("scripts/{sha256}.js");
        if !self.dir.exists(&name) {
            let tmp = format!("scripts/.{sha256}.tmp");
            self.dir
                .open_with(&tmp, &private_file(false))?
                .write_all(source.as_bytes())?;
            self.dir.rename(&tmp, &self.dir, &name)?;
        }
        Ok(self.path.join(name))
    }

    /// A kept script, by its hash.
    pub fn kept_script(&self, sha256: &str) -> Option<String> {
        if sha256.is_empty() || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        self.dir.read_to_string(format!("scripts/{sha256}.js")).ok()
    }

    /// Writes the result, compact, by temp file + rename.
    pub fn write_result(&self, result: &Value) -> io::Result<()> {
        let text = serde_json::to_vec(result).map_err(io::Error::other)?;
        let tmp = format!("{RESULT}.tmp");
        let mut f = self.dir.open_with(&tmp, &private_file(false))?;
        f.write_all(&text)?;
        f.sync_data()?;
        drop(f);
        self.dir.rename(&tmp, &self.dir, RESULT)
    }

    /// `result.json`, when the run ended ok.
    pub fn read_result(&self) -> io::Result<Vec<u8>> {
        self.dir.read(RESULT)
    }

    /// Opens `name` in the run directory for reading.
    pub fn open_file(&self, name: &str) -> io::Result<std::fs::File> {
        self.dir.open(name).map(|f| f.into_std())
    }

    /// A folder of the run directory (`transcripts`, `mcp`), made
    /// private on first use, opened as a capability: what writes there can
    /// touch nothing else.
    pub fn subdir(&self, name: &str) -> io::Result<Dir> {
        Self::subdir_of(&self.dir, name)
    }

    /// [`Self::subdir`] of a run directory opened with [`Self::handle`].
    pub fn subdir_of(dir: &Dir, name: &str) -> io::Result<Dir> {
        dir.create_dir_with(name, &private_dir())?;
        dir.open_dir(name)
    }

    /// The run directory as a capability of its own.
    pub fn handle(&self) -> io::Result<Dir> {
        self.dir.try_clone()
    }

    /// Opens `name` in `dir` for appending (created private).
    pub fn append_in(dir: &Dir, name: &str) -> io::Result<std::fs::File> {
        dir.open_with(name, &private_file(true))
            .map(|f| f.into_std())
    }

    /// Opens the run's events file for appending, rotating it past
    /// [`EVENTS_ROTATE_BYTES`].
    pub fn events_writer(&self) -> io::Result<crate::run::events::RunEvents> {
        let dir = self.dir.try_clone()?;
        crate::run::events::RunEvents::open(dir)
    }

    /// Leaves a control request for the process running the run; returns
    /// its name.
    pub fn write_control(&self, request: &crate::run::control::Request) -> io::Result<String> {
        use crate::run::control::{new_name, request_file};
        self.dir.create_dir_with("control", &private_dir())?;
        let name = new_name();
        let text = serde_json::to_vec(request).map_err(io::Error::other)?;
        let tmp = format!("control/.{name}.tmp");
        self.dir
            .open_with(&tmp, &private_file(false))?
            .write_all(&text)?;
        self.dir.rename(&tmp, &self.dir, request_file(&name))?;
        Ok(name)
    }

    /// Takes the control requests waiting (oldest first), removing them.
    pub fn take_controls(&self) -> Vec<(String, crate::run::control::Request)> {
        let Ok(entries) = self.dir.read_dir("control") else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".json").map(String::from))
            .collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| {
                let file = crate::run::control::request_file(&name);
                let text = self.dir.read(&file).ok();
                let _ = self.dir.remove_file(&file);
                Some((name, serde_json::from_slice(&text?).ok()?))
            })
            .collect()
    }

    /// Answers a control request.
    pub fn answer_control(&self, name: &str, answer: &crate::run::control::Answer) {
        if let Ok(text) = serde_json::to_vec(answer) {
            let _ = self.dir.write(crate::run::control::answer_file(name), text);
        }
    }

    /// The answer to a request, once given (then removed).
    pub fn control_answer(&self, name: &str) -> Option<crate::run::control::Answer> {
        let file = crate::run::control::answer_file(name);
        let text = self.dir.read(&file).ok()?;
        let answer = serde_json::from_slice(&text).ok()?;
        let _ = self.dir.remove_file(&file);
        Some(answer)
    }

    /// Asks the session running this run to pause.
    pub fn request_stop(&self) -> io::Result<()> {
        self.dir.write(STOP, b"")
    }

    /// `wasmflow stop` asked for a pause.
    pub fn stop_requested(&self) -> bool {
        self.dir.exists(STOP)
    }

    /// Removes a stale stop request.
    pub fn clear_stop(&self) {
        let _ = self.dir.remove_file(STOP);
    }
}

fn sync_dir(dir: &Dir) -> io::Result<()> {
    dir.open(".")?.sync_all()
}

/// Appends journal lines; nothing is durable until [`Self::commit`].
pub struct JournalWriter {
    file: File,
    buffer: Vec<u8>,
}

impl JournalWriter {
    /// Queues a record; `commit` writes it.
    pub fn push(&mut self, record: &Record) {
        if serde_json::to_writer(&mut self.buffer, record).is_ok() {
            self.buffer.push(b'\n');
        }
    }

    /// Writes what was pushed; with `durable`, one `fdatasync` after.
    pub fn commit(&mut self, durable: bool) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buffer)?;
        self.buffer.clear();
        if durable {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

/// Every run under `root`, newest first; unreadable ones are skipped.
pub fn list(root: &Path) -> Vec<RunInfo> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut runs: Vec<RunInfo> = entries
        .flatten()
        .filter_map(|e| {
            let id = e.file_name().to_string_lossy().into_owned();
            RunDir::open(root, &id).ok()?.read_info().ok()
        })
        .collect();
    runs.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(b.id.cmp(&a.id)));
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ids_sort_by_time_and_refuse_paths() {
        let id = new_run_id();
        assert_eq!(id.len(), 20, "{id}");
        assert!(check_id(&id).is_ok());
        for bad in ["", "../x", "a/b", ".", "a b"] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_run_that_ended_while_its_info_was_read_is_not_interrupted() {
        let root = std::env::temp_dir().join(format!("wf-rundir-status-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let run = RunDir::create(&root, "r1").unwrap();
        let stale = RunInfo {
            id: "r1".into(),
            status: "running".into(),
            ..RunInfo::default()
        };
        run.write_info(&stale).unwrap();
        assert_eq!(run.status(&stale), "interrupted");
        let ended = RunInfo {
            status: "ok".into(),
            ..stale.clone()
        };
        run.write_info(&ended).unwrap();
        assert_eq!(run.status(&stale), "ok");
        let lock = run.try_lock().unwrap().unwrap();
        run.write_info(&stale).unwrap();
        assert_eq!(run.status(&stale), "running");
        drop(lock);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_run_directory_is_private_and_its_info_atomic() {
        let root = std::env::temp_dir().join(format!("wf-rundir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let run = RunDir::create(&root, "r1").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&run.path), 0o700);
        let info = RunInfo {
            id: "r1".into(),
            status: "running".into(),
            ..RunInfo::default()
        };
        run.write_info(&info).unwrap();
        assert_eq!(mode(&run.path.join(INFO)), 0o600);
        assert_eq!(
            RunDir::open(&root, "r1")
                .unwrap()
                .read_info()
                .unwrap()
                .status,
            "running"
        );
        let mut j = run.journal_writer(0).unwrap();
        j.push(&Record::Failed {
            key: "k".into(),
            agent_id: 1,
            label: "l".into(),
            error: "e".into(),
            usage: Default::default(),
            ts: 0,
        });
        j.commit(true).unwrap();
        assert_eq!(mode(&run.path.join(JOURNAL)), 0o600);
        assert_eq!(run.read_journal().unwrap().records.len(), 1);
        assert!(
            RunDir::open(&root, "nope")
                .err()
                .unwrap()
                .contains("no run `nope`")
        );
        assert_eq!(list(&root).len(), 1);
        let _ = std::fs::remove_dir_all(&root);
    }
}
