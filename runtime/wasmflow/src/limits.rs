//! The bounds of a run, with their defaults.

use std::time::Duration;

/// Largest script accepted (the contract's limit).
pub const MAX_SCRIPT_BYTES: usize = 512 * 1024;

/// Everything a run may not exceed. `Default` gives the documented defaults.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Agents running at once; excess `agent()` calls queue in call order.
    pub concurrency: usize,
    /// Agents spawned over the whole run; the next `agent()` throws.
    pub max_agents: u64,
    /// Wasm fuel per guest slice (one `start` or `deliver` call): bounds the
    /// CPU a script burns between two waits, so `while(true){}` ends.
    pub fuel_per_slice: u64,
    /// Guest linear memory, in bytes.
    pub memory_bytes: usize,
    /// Wall clock for the whole run.
    pub wall_clock: Duration,
    /// Sizes of what crosses the sandbox boundary and what agents return.
    pub sizes: Sizes,
}

/// Size bounds, in bytes unless said otherwise. A script cannot make the
/// host hold or print unbounded data, and one runaway agent cannot flood
/// the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Sizes {
    /// One `agent()` prompt; over it `agent()` throws.
    pub prompt: usize,
    /// One call's options as JSON, schema included; over it `agent()` throws.
    pub options: usize,
    /// One `opts.schema` as JSON; over it `agent()` throws.
    pub schema: usize,
    /// The script's result as JSON; over it the run ends (exit 3).
    pub result: usize,
    /// One `log()` / `console.*` line; longer lines are cut, saying so.
    pub log_line: usize,
    /// Log lines per second; more are dropped, and the count is said.
    pub log_lines_per_sec: u32,
    /// One agent's output; over it the agent fails, and its full output is
    /// kept in the run directory (`outputs/<id>.txt`).
    pub agent_output: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Sizes {
            prompt: 1 << 20,
            options: 256 << 10,
            schema: 64 << 10,
            result: 16 << 20,
            log_line: 16 << 10,
            log_lines_per_sec: 200,
            agent_output: 4 << 20,
        }
    }
}

impl Limits {
    /// Agents running at once.
    pub const DEFAULT_CONCURRENCY: usize = 16;
    /// Agents over a run's lifetime.
    pub const DEFAULT_MAX_AGENTS: u64 = 1_000;
    /// About 5 s of pure-JS CPU on this machine class (see docs/performance.md).
    pub const DEFAULT_FUEL_PER_SLICE: u64 = 10_000_000_000;
    /// Guest memory.
    pub const DEFAULT_MEMORY_BYTES: usize = 512 << 20;
    /// Wall clock of a run.
    pub const DEFAULT_WALL_CLOCK: Duration = Duration::from_secs(12 * 3600);
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            concurrency: Self::DEFAULT_CONCURRENCY,
            max_agents: Self::DEFAULT_MAX_AGENTS,
            fuel_per_slice: Self::DEFAULT_FUEL_PER_SLICE,
            memory_bytes: Self::DEFAULT_MEMORY_BYTES,
            wall_clock: Self::DEFAULT_WALL_CLOCK,
            sizes: Sizes::default(),
        }
    }
}

/// Parses `90`, `90s`, `1500ms`, `5m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (try 30s, 5m, 2h)"))?;
    let secs = match unit {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use ms, s, m, h or d)"
            ));
        }
    };
    if !secs.is_finite() || secs <= 0.0 || secs > 1e9 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a token count: `20000`, `500k`, `1.5m`.
pub fn parse_tokens(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let (num, mult) = match t.strip_suffix('k') {
        Some(n) => (n, 1e3),
        None => match t.strip_suffix('m') {
            Some(n) => (n, 1e6),
            None => (t.as_str(), 1.0),
        },
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a token count (try 20000, 500k or 1.5m)"))?;
    let tokens = v * mult;
    if !tokens.is_finite() || !(1.0..=1e15).contains(&tokens) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(tokens.round() as u64)
}

/// Parses a byte size for the size bounds: `64K`, `1M`, `2G`, or a bare
/// number of bytes; from 1 KiB to 4 GiB.
pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (try 64K or 4M)"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use K, M or G)")),
    };
    let bytes = value
        .checked_mul(mult)
        .filter(|b| *b >= 1 << 10 && *b <= 4 << 30)
        .ok_or_else(|| format!("`{text}` must be between 1K and 4G"))?;
    Ok(bytes as usize)
}

/// Parses `512`, `512M`, `2G`, `64k` as bytes (a bare number is MiB).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (try 256M or 1G)"))?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "m" | "mb" | "mib" => 1 << 20,
        "k" | "kb" | "kib" => 1 << 10,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("`{text}`: unknown unit `{unit}` (use K, M or G)")),
    };
    let bytes = value
        .checked_mul(mult)
        .filter(|b| *b >= 1 << 20 && *b <= 4 << 30)
        .ok_or_else(|| format!("`{text}` must be between 1M and 4G"))?;
    Ok(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn tokens() {
        assert_eq!(parse_tokens("500k").unwrap(), 500_000);
        assert_eq!(parse_tokens("1.5M").unwrap(), 1_500_000);
        assert_eq!(parse_tokens("20000").unwrap(), 20_000);
        assert!(parse_tokens("lots").is_err());
        assert!(parse_tokens("0").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256").unwrap(), 256 << 20);
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert!(parse_size("12Q").is_err());
        assert!(parse_size("10k").is_err());
        assert!(parse_size("99G").is_err());
    }
}
