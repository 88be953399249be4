//! Checks of the dynamic linking tables of a plugin image that the trial load cannot cover.
//!
//! The trial process (`probe`) finds what crashes `dlopen`, the ABI checks and the exit. What it
//! cannot see is damage that only shows when the plugin's code runs: a symbol version index out
//! of range (used at the plugin's first `dlsym`, which Rust's standard library makes from inside
//! the plugin, and then read past the version array), or a relocation that writes or points
//! outside the object (a wild pointer in the plugin's data). So the version tables and the
//! relocations are checked here, with the string, symbol and hash tables they index: every
//! offset within the loaded bytes, every index within its table.

const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_HASH: u64 = 4;
const DT_STRTAB: u64 = 5;
const DT_SYMTAB: u64 = 6;
const DT_STRSZ: u64 = 10;
const DT_SONAME: u64 = 14;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;
const DT_GNU_HASH: u64 = 0x6fff_fef5;
const DT_VERSYM: u64 = 0x6fff_fff0;
const DT_VERDEF: u64 = 0x6fff_fffc;
const DT_VERDEFNUM: u64 = 0x6fff_fffd;
const DT_VERNEED: u64 = 0x6fff_fffe;
const DT_VERNEEDNUM: u64 = 0x6fff_ffff;
const DT_RELA: u64 = 7;
const DT_RELASZ: u64 = 8;
const DT_JMPREL: u64 = 23;
const DT_PLTRELSZ: u64 = 2;

/// A loadable segment: where its file bytes go in memory.
#[derive(Copy, Clone, Debug)]
pub struct Segment {
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// Reads bytes of the file at an offset, as `Image::read_at` (how many were read).
pub type ReadAt<'a> = &'a dyn Fn(&mut [u8], u64) -> std::io::Result<usize>;

struct Tables<'a> {
    read_at: ReadAt<'a>,
    segments: &'a [Segment],
}

impl Tables<'_> {
    /// The file offset of `len` bytes at address `vaddr`, if they are all loaded from the file.
    fn offset(&self, vaddr: u64, len: u64) -> Result<u64, String> {
        self.segments
            .iter()
            .find(|s| {
                vaddr >= s.vaddr
                    && vaddr
                        .checked_add(len)
                        .is_some_and(|e| e <= s.vaddr + s.filesz)
            })
            .map(|s| s.offset + (vaddr - s.vaddr))
            .ok_or_else(|| {
                format!(
                    "a table at address {vaddr:#x} ({len} bytes) lies outside its loaded segments"
                )
            })
    }

    fn bytes(&self, vaddr: u64, len: u64) -> Result<Vec<u8>, String> {
        let at = self.offset(vaddr, len)?;
        let mut buf = vec![0u8; len as usize];
        (self.read_at)(&mut buf, at).map_err(|e| e.to_string())?;
        Ok(buf)
    }

    fn u16(&self, vaddr: u64) -> Result<u16, String> {
        let b = self.bytes(vaddr, 2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&self, vaddr: u64) -> Result<u32, String> {
        let b = self.bytes(vaddr, 4)?;
        Ok(u32::from_le_bytes(b[..4].try_into().expect("4 bytes")))
    }
}

/// Checks the dynamic section at `dynamic` (file offset, size) and the tables it names;
/// `x86_64`: the relocations are x86-64 ones (their types are known).
pub fn check_dynamic(
    read_at: ReadAt<'_>,
    segments: &[Segment],
    dynamic: (u64, u64),
    x86_64: bool,
) -> Result<(), String> {
    let t = Tables { read_at, segments };
    let (offset, size) = dynamic;
    if size > 1 << 20 {
        return Err("its dynamic section is implausibly large".into());
    }
    let mut raw = vec![0u8; size as usize];
    if read_at(&mut raw, offset).map_err(|e| e.to_string())? < raw.len() {
        return Err("its dynamic section lies outside the file".into());
    }
    let mut entries = Vec::new();
    for e in raw.chunks_exact(16) {
        let tag = u64::from_le_bytes(e[..8].try_into().expect("8 bytes"));
        let val = u64::from_le_bytes(e[8..].try_into().expect("8 bytes"));
        if tag == DT_NULL {
            break;
        }
        entries.push((tag, val));
    }
    let one = |tag: u64| {
        entries
            .iter()
            .rev()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| *v)
    };
    let (Some(strtab), Some(strsz)) = (one(DT_STRTAB), one(DT_STRSZ)) else {
        return Ok(()); // nothing to look symbols up in: the linker does not either
    };
    t.offset(strtab, strsz)?;
    let name_ok = |at: u64, what: &str| {
        if at < strsz {
            Ok(())
        } else {
            Err(format!("a {what} name lies outside its string table"))
        }
    };
    for (tag, val) in &entries {
        if matches!(*tag, DT_NEEDED | DT_SONAME | DT_RPATH | DT_RUNPATH) {
            name_ok(*val, "library")?;
        }
    }
    let Some(symtab) = one(DT_SYMTAB) else {
        return Ok(());
    };
    let symbols = symbol_count(&t, one(DT_HASH), one(DT_GNU_HASH))?;
    if symbols == 0 && one(DT_SYMTAB).is_some() {
        // No hash table to count by: the relocations cannot be checked against it.
        return Ok(());
    }
    let syms = t.bytes(symtab, symbols * 24)?;
    for sym in syms.chunks_exact(24) {
        name_ok(
            u64::from(u32::from_le_bytes(sym[..4].try_into().expect("4 bytes"))),
            "symbol",
        )?;
    }
    if x86_64 {
        for (table, size) in [(DT_RELA, DT_RELASZ), (DT_JMPREL, DT_PLTRELSZ)] {
            if let (Some(at), Some(len)) = (one(table), one(size)) {
                check_relocations(&t, at, len, symbols)?;
            }
        }
    }
    let Some(versym) = one(DT_VERSYM) else {
        return Ok(());
    };
    check_versions(&t, versym, symbols, &one, &name_ok)
}

/// Checks the version definitions and requirements and that each symbol's version index
/// (`DT_VERSYM` at `versym`, one per symbol) names one of them; `one` reads a dynamic entry,
/// `name_ok` checks a string table offset.
fn check_versions(
    t: &Tables<'_>,
    versym: u64,
    symbols: u64,
    one: &dyn Fn(u64) -> Option<u64>,
    name_ok: &dyn Fn(u64, &str) -> Result<(), String>,
) -> Result<(), String> {
    let mut highest = 1u16;
    if let (Some(mut at), Some(count)) = (one(DT_VERDEF), one(DT_VERDEFNUM)) {
        for _ in 0..count.min(1 << 16) {
            if t.u16(at)? != 1 {
                return Err("its version definitions are damaged".into());
            }
            highest = highest.max(t.u16(at + 4)? & 0x7fff);
            let aux = at + u64::from(t.u32(at + 12)?);
            name_ok(u64::from(t.u32(aux)?), "version")?;
            match t.u32(at + 16)? {
                0 => break,
                next => at += u64::from(next),
            }
        }
    }
    if let (Some(mut at), Some(count)) = (one(DT_VERNEED), one(DT_VERNEEDNUM)) {
        for _ in 0..count.min(1 << 16) {
            if t.u16(at)? != 1 {
                return Err("its version requirements are damaged".into());
            }
            name_ok(u64::from(t.u32(at + 4)?), "library")?;
            let mut aux = at + u64::from(t.u32(at + 8)?);
            for _ in 0..t.u16(at + 2)? {
                highest = highest.max(t.u16(aux + 6)? & 0x7fff);
                name_ok(u64::from(t.u32(aux + 8)?), "version")?;
                match t.u32(aux + 12)? {
                    0 => break,
                    next => aux += u64::from(next),
                }
            }
            match t.u32(at + 12)? {
                0 => break,
                next => at += u64::from(next),
            }
        }
    }
    let indices = t.bytes(versym, symbols * 2)?;
    for (n, v) in indices.chunks_exact(2).enumerate() {
        let index = u16::from_le_bytes([v[0], v[1]]) & 0x7fff;
        if index > highest {
            return Err(format!(
                "symbol {n} has version index {index}, but only {highest} versions are defined"
            ));
        }
    }
    Ok(())
}

/// Checks that each x86-64 relocation is of a known type, names an existing symbol, writes
/// within the loaded object, and (a relative one) points into it: a relocation outside those
/// bounds writes or points anywhere in nbdkit's memory. (One that stays within them but is
/// wrong is damaged data, like a damaged instruction: found only when the plugin uses it.)
fn check_relocations(t: &Tables<'_>, at: u64, len: u64, symbols: u64) -> Result<(), String> {
    // The x86-64 types (R_X86_64_NUM); RELATIVE and IRELATIVE point into the object.
    const TYPES: u32 = 43;
    const RELATIVE: [u32; 2] = [8, 37];
    if len > 64 << 20 {
        return Err("its relocation table is implausibly large".into());
    }
    let span = t
        .segments
        .iter()
        .map(|s| (s.vaddr, s.vaddr.saturating_add(s.memsz)))
        .fold((u64::MAX, 0), |(lo, hi), (a, b)| (lo.min(a), hi.max(b)));
    let inside = |addr: u64, len: u64| {
        t.segments
            .iter()
            .any(|s| addr >= s.vaddr && addr.saturating_add(len) <= s.vaddr.saturating_add(s.memsz))
    };
    let table = t.bytes(at, len - len % 24)?;
    for (n, r) in table.chunks_exact(24).enumerate() {
        let offset = u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
        let info = u64::from_le_bytes(r[8..16].try_into().expect("8 bytes"));
        let addend = i64::from_le_bytes(r[16..].try_into().expect("8 bytes"));
        let (kind, symbol) = (info as u32, info >> 32);
        let bad = if kind >= TYPES {
            Some(format!("has unknown type {kind}"))
        } else if symbol >= symbols.max(1) {
            Some(format!("names symbol {symbol} of {symbols}"))
        } else if kind != 0 && !inside(offset, 8) {
            Some(format!("writes at {offset:#x}, outside the object"))
        } else if RELATIVE.contains(&kind)
            && !(addend >= 0 && (addend as u64) >= span.0 && (addend as u64) <= span.1)
        {
            Some(format!("points at {addend:#x}, outside the object"))
        } else {
            None
        };
        if let Some(why) = bad {
            return Err(format!("relocation {n} {why}"));
        }
    }
    Ok(())
}

/// How many symbols the dynamic symbol table has, from the hash table the linker uses.
fn symbol_count(t: &Tables<'_>, hash: Option<u64>, gnu_hash: Option<u64>) -> Result<u64, String> {
    const MAX: u64 = 1 << 24;
    if let Some(hash) = gnu_hash {
        let buckets = u64::from(t.u32(hash)?);
        let first = u64::from(t.u32(hash + 4)?);
        let bloom = u64::from(t.u32(hash + 8)?);
        if buckets > MAX || bloom > MAX {
            return Err("its symbol hash table is damaged".into());
        }
        let buckets_at = hash + 16 + bloom * 8;
        let chains_at = buckets_at + buckets * 4;
        let mut last = 0u64;
        for b in 0..buckets {
            last = last.max(u64::from(t.u32(buckets_at + b * 4)?));
        }
        if last < first {
            return Ok(first);
        }
        loop {
            if last > MAX {
                return Err("its symbol hash table is damaged".into());
            }
            if t.u32(chains_at + (last - first) * 4)? & 1 == 1 {
                return Ok(last + 1);
            }
            last += 1;
        }
    }
    if let Some(hash) = hash {
        let chains = u64::from(t.u32(hash + 4)?);
        return if chains > MAX {
            Err("its symbol hash table is damaged".into())
        } else {
            Ok(chains)
        };
    }
    Ok(0)
}

/// The byte ranges of an ELF file the dynamic linker reads: the header, the program headers and
/// the loadable segments' file bytes. `header` is the file's first 64 bytes, `read_at` reads
/// more; `None` if it is not a 64-bit little-endian ELF header with a readable table.
pub fn loaded_ranges(
    header: &[u8; 64],
    read_at: &mut dyn FnMut(&mut [u8], u64) -> std::io::Result<usize>,
) -> Option<Vec<(u64, u64)>> {
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let phoff = u64::from_le_bytes(header[0x20..0x28].try_into().ok()?);
    let phentsize = u64::from(u16::from_le_bytes([header[0x36], header[0x37]]));
    let phnum = u64::from(u16::from_le_bytes([header[0x38], header[0x39]]));
    if phentsize < 56 {
        return None;
    }
    let mut table = vec![0u8; (phentsize * phnum) as usize];
    if read_at(&mut table, phoff).ok()? < table.len() {
        return None;
    }
    let mut ranges = vec![(0, 64), (phoff, phoff + table.len() as u64)];
    for entry in table.chunks_exact(phentsize as usize) {
        if u32::from_le_bytes(entry[..4].try_into().ok()?) == 1 {
            let offset = u64::from_le_bytes(entry[8..16].try_into().ok()?);
            let filesz = u64::from_le_bytes(entry[0x20..0x28].try_into().ok()?);
            ranges.push((offset, offset.saturating_add(filesz)));
        }
    }
    Some(ranges)
}
