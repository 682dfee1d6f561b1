//! The wasmtime engine guests run on: the pooling allocator's sizes and
//! how a slot is reset between instances.
//!
//! A slot's reset is wasmtime's, from the vendored copy in
//! `vendor/wasmtime` (see `vendor/README.md`): with `PAGEMAP_SCAN` it
//! resets in place every page the instance dirtied, however scattered, up
//! to the kept-resident budget, and decommits the rest, including pages the
//! kernel swapped out.
//! The tests below hold it to that: whatever an instance wrote, the next
//! instance in the same slot sees the module's initial memory.

use crate::{RuntimeConfig, RuntimeError};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// The wasmtime engine of a [`crate::Runtime`], with the configuration it
/// was built for. Building it reserves and guards the pool (milliseconds
/// of `mmap` and `mprotect` for the stacks alone), so it can be built on a
/// thread of its own and handed to [`crate::Runtime::with_engine`].
pub struct GuestEngine {
    pub(crate) engine: Engine,
    pub(crate) config: RuntimeConfig,
}

impl GuestEngine {
    /// The engine for `config` ([`engine_config`]).
    pub fn build(config: RuntimeConfig) -> Result<GuestEngine, RuntimeError> {
        let started = std::time::Instant::now();
        let engine = Engine::new(&engine_config(&config)).map_err(|e| {
            RuntimeError::Io(format!(
                "cannot create the wasm engine ({e:#}); if virtual memory is limited (ulimit -v), lower --max-in-flight or --max-memory-mb"
            ))
        })?;
        tracing::debug!(elapsed = ?started.elapsed(), "built the wasm engine");
        Ok(GuestEngine { engine, config })
    }
}

/// The engine configuration for `config`: epoch interruption, WASI 0.3's
/// async component model, and a pool sized by `--max-in-flight`.
pub(crate) fn engine_config(config: &RuntimeConfig) -> Config {
    let slots = config.max_in_flight.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(4))
        .total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(4))
        // A WASI 0.3 guest's task may run on a fiber of its own while
        // the call that started it waits on another.
        .total_stacks(slots.saturating_mul(2))
        .max_memory_size((config.max_memory_mb as usize) << 20)
        // Slots of dropped instances stay warm (their pages resident) for
        // fast reuse; bound how many, or RSS grows with the pool size.
        .max_unused_warm_slots(config.warm_slots)
        // Reset only the pages an instance dirtied (Linux 6.7+'s
        // PAGEMAP_SCAN; elsewhere the whole kept-resident prefix).
        .pagemap_scan(wasmtime::Enabled::Auto)
        .linear_memory_keep_resident(config.keep_resident_bytes)
        .table_keep_resident(config.keep_resident_bytes);
    let mut wasm = Config::new();
    wasm.epoch_interruption(true)
        // WASI 0.3 guests: async component functions, streams, futures.
        .wasm_component_model_async(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    wasm
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::io::{Read, Seek, SeekFrom};
    use std::path::PathBuf;
    use wasmtime::{Engine, Instance, Module, Store};

    const PAGE: usize = 4096;
    const IMAGE: &[u8] = b"nimbus initial image";

    /// A module with a memory of `mib` MiB and a data segment, on an engine
    /// configured as the node's but for the bytes it keeps resident.
    fn engine_and_module(mib: u64, keep_resident_bytes: usize) -> (Engine, Module) {
        let config = RuntimeConfig {
            max_in_flight: 2,
            max_memory_mb: 16,
            keep_resident_bytes,
            ..RuntimeConfig::default()
        };
        let engine = Engine::new(&engine_config(&config)).unwrap();
        let wat = format!(
            r#"(module (memory (export "memory") {}) (data (i32.const 0) "{}"))"#,
            mib * 16,
            std::str::from_utf8(IMAGE).unwrap()
        );
        let module = Module::new(&engine, wat).unwrap();
        (engine, module)
    }

    /// An instance of `module` in a store of its own; its memory's base.
    async fn instance(engine: &Engine, module: &Module) -> (Store<()>, wasmtime::Memory, usize) {
        let mut store = Store::new(engine, ());
        let instance = Instance::new_async(&mut store, module, &[]).await.unwrap();
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        let base = memory.data_ptr(&store) as usize;
        (store, memory, base)
    }

    /// The pages of `[base, base + len)` the kernel has in memory.
    fn resident_pages(base: usize, len: usize) -> Vec<bool> {
        let mut vec = vec![0u8; len / PAGE];
        // SAFETY: the range is the pool's mapping (reserved for the
        // engine's life); mincore only reads the page tables.
        let rc = unsafe { libc::mincore(base as *mut _, len, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().map(|b| b & 1 == 1).collect()
    }

    /// Whether the page at `addr` is swapped out (/proc/self/pagemap bit 62).
    fn swapped(addr: usize) -> bool {
        let mut pagemap = std::fs::File::open("/proc/self/pagemap").unwrap();
        pagemap
            .seek(SeekFrom::Start((addr / PAGE * 8) as u64))
            .unwrap();
        let mut entry = [0u8; 8];
        pagemap.read_exact(&mut entry).unwrap();
        u64::from_le_bytes(entry) & (1 << 62) != 0
    }

    /// Asserts that a fresh instance's memory is the module's initial one.
    fn assert_initial(memory: &[u8]) {
        assert_eq!(&memory[..IMAGE.len()], IMAGE);
        if let Some(at) = memory[IMAGE.len()..].iter().position(|b| *b != 0) {
            panic!(
                "the next instance in the slot sees the previous one's data at byte {} (page {})",
                IMAGE.len() + at,
                (IMAGE.len() + at) / PAGE
            );
        }
    }

    /// Dirties `runs` (page numbers) and the image of a fresh instance,
    /// calls `before_drop` with its memory's base, drops it, and returns
    /// which pages of its slot stay resident and the next instance in the
    /// slot, with its memory.
    async fn dirty_and_reinstantiate(
        engine: &Engine,
        module: &Module,
        runs: &[usize],
        image_too: bool,
        before_drop: impl FnOnce(usize),
    ) -> (Vec<bool>, Store<()>, wasmtime::Memory) {
        let (mut store, memory, base) = instance(engine, module).await;
        let len = memory.data_size(&store);
        for page in runs {
            memory.data_mut(&mut store)[page * PAGE..(page + 1) * PAGE].fill(0xa5);
        }
        if image_too {
            memory.data_mut(&mut store)[..IMAGE.len()].fill(b'x');
        }
        before_drop(base);
        drop(store);
        let resident = resident_pages(base, len);
        let (store, memory, next) = instance(engine, module).await;
        assert_eq!(
            next, base,
            "the same module's next instance takes its warm slot"
        );
        (resident, store, memory)
    }

    /// The `/proc/self/maps` line of the mapping holding `addr`, and the
    /// one just below it: (start, end, permissions) each.
    type Vma = (usize, usize, String);
    fn vma_and_below(addr: usize) -> (Vma, Option<Vma>) {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let vmas: Vec<Vma> = maps
            .lines()
            .map(|l| {
                let mut f = l.split_whitespace();
                let (range, perms) = (f.next().unwrap(), f.next().unwrap());
                let (a, b) = range.split_once('-').unwrap();
                let hex = |x| usize::from_str_radix(x, 16).unwrap();
                (hex(a), hex(b), perms.to_string())
            })
            .collect();
        let at = vmas
            .iter()
            .find(|(a, b, _)| (*a..*b).contains(&addr))
            .expect("a mapping holds the stack")
            .clone();
        let below = vmas.iter().find(|(_, b, _)| *b == at.0).cloned();
        (at, below)
    }

    #[tokio::test]
    async fn every_stack_a_guest_runs_on_is_guarded() {
        // The pool's stacks get their guard page at their first use
        // (vendor/wasmtime), not at the engine's creation: a host function
        // a guest calls runs on the guest's stack, and the page below that
        // stack must be inaccessible, for each stack of the pool.
        let config = RuntimeConfig {
            max_in_flight: 2,
            max_memory_mb: 16,
            ..RuntimeConfig::default()
        };
        let engine = Engine::new(&engine_config(&config)).unwrap();
        let module = Module::new(
            &engine,
            r#"(module (import "host" "probe" (func $probe)) (func (export "run") call $probe))"#,
        )
        .unwrap();
        let mut linker = wasmtime::Linker::new(&engine);
        linker
            .func_wrap(
                "host",
                "probe",
                |mut caller: wasmtime::Caller<'_, usize>| {
                    let local = 0u8;
                    *caller.data_mut() = std::hint::black_box(&local) as *const u8 as usize;
                },
            )
            .unwrap();
        // Every stack of the pool at once (2 per invocation in flight).
        let mut stores = Vec::new();
        for _ in 0..4 {
            let mut store = Store::new(&engine, 0usize);
            store.set_epoch_deadline(u64::MAX / 2);
            let instance = linker.instantiate_async(&mut store, &module).await.unwrap();
            stores.push((store, instance));
        }
        let mut seen = std::collections::HashSet::new();
        let stack_size = 2 << 20; // wasmtime's default async stack size
        for (store, instance) in &mut stores {
            let run = instance
                .get_typed_func::<(), ()>(&mut *store, "run")
                .unwrap();
            let (sp, (at, below)) = {
                run.call_async(&mut *store, ()).await.unwrap();
                let sp = *store.data();
                (sp, vma_and_below(sp))
            };
            assert!(seen.insert(at.0), "a stack of its own");
            assert!(at.2.starts_with("rw"), "{at:?}");
            let below = below.unwrap_or_else(|| panic!("nothing mapped below the stack {at:?}"));
            assert_eq!(
                (below.2.as_str(), below.1 - below.0),
                ("---p", PAGE),
                "the page below the stack at {sp:#x} (in {at:?}) is its guard"
            );
            assert!(sp - at.0 <= stack_size, "the guard is this stack's own");
        }
    }

    #[tokio::test]
    async fn a_slot_is_reset_in_place_however_scattered_the_dirty_pages() {
        let (engine, module) = engine_and_module(8, 4 << 20);
        // 600 dirty runs: more than one PAGEMAP_SCAN call reports (256;
        // upstream wasmtime stopped at 32), fewer pages than kept resident.
        let runs: Vec<usize> = (0..600).map(|i| 16 + 2 * i).collect();
        let (resident, store, memory) =
            dirty_and_reinstantiate(&engine, &module, &runs, true, |_| {}).await;
        // Reset in place (memset), not decommitted: the next instance
        // does not fault them back in.
        let dropped: Vec<_> = runs.iter().filter(|p| !resident[**p]).collect();
        assert!(
            dropped.is_empty(),
            "{} of the 600 dirty pages were decommitted instead of reset in place, from page {:?}",
            dropped.len(),
            dropped.first()
        );
        assert_initial(memory.data(&store));
    }

    #[tokio::test]
    async fn dirty_pages_past_the_resident_budget_are_decommitted() {
        // 300 pages kept resident, 400 dirty runs: the scan resumes after
        // its first call's 256 regions, spends the budget on the first 300
        // dirty pages, and the rest of the slot is decommitted.
        let (engine, module) = engine_and_module(4, 300 * PAGE);
        let runs: Vec<usize> = (0..400).map(|i| 16 + 2 * i).collect();
        let (resident, store, memory) =
            dirty_and_reinstantiate(&engine, &module, &runs, false, |_| {}).await;
        let kept: Vec<usize> = runs.iter().copied().filter(|p| resident[*p]).collect();
        assert_eq!(
            kept,
            runs[..300],
            "the first 300 dirty pages are reset in place, the others decommitted"
        );
        assert_initial(memory.data(&store));
    }

    #[tokio::test]
    async fn a_dirty_page_swapped_out_is_reset_for_the_next_instance() {
        let _swap = Swap::ensure();
        let (engine, module) = engine_and_module(4, 4 << 20);
        let pages: Vec<usize> = (0..8).map(|i| 100 + 3 * i).collect();
        let page_out = |base: usize| {
            for page in &pages {
                let addr = base + page * PAGE;
                // SAFETY: a range of the live instance's memory; MADV_PAGEOUT
                // only asks the kernel to reclaim it, contents unchanged.
                let rc = unsafe { libc::madvise(addr as *mut _, PAGE, libc::MADV_PAGEOUT) };
                assert_eq!(rc, 0, "madvise: {}", std::io::Error::last_os_error());
            }
            let out = pages.iter().filter(|p| swapped(base + **p * PAGE)).count();
            assert!(
                out > 0,
                "the kernel swapped none of the 8 pages out, so this probe checks nothing"
            );
        };
        let (_, store, memory) =
            dirty_and_reinstantiate(&engine, &module, &pages, false, page_out).await;
        assert_initial(memory.data(&store));
    }

    /// Swap space for the swap probe: the machine's if it has some, else a
    /// 64 MiB swap file turned on for the test and off after it (needs
    /// root, as the test suite's set-up does).
    struct Swap(Option<(PathBuf, CString)>);

    impl Swap {
        fn ensure() -> Swap {
            let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
            if swaps.lines().count() > 1 {
                return Swap(None);
            }
            let path =
                std::env::temp_dir().join(format!("nimbus-swap-probe-{}", std::process::id()));
            std::fs::write(&path, vec![0u8; 64 << 20]).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let mkswap = std::process::Command::new("mkswap").arg(&path).output();
            assert!(
                matches!(&mkswap, Ok(out) if out.status.success()),
                "mkswap {} failed ({mkswap:?}): the swap probe needs util-linux's mkswap",
                path.display()
            );
            let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a NUL-terminated path to a file mkswap prepared.
            let rc = unsafe { libc::swapon(c.as_ptr(), 0) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                let _ = std::fs::remove_file(&path);
                panic!(
                    "swapon {}: {err}; the swap probe needs root and a file system that holds swap files (or swap already on)",
                    path.display()
                );
            }
            Swap(Some((path, c)))
        }
    }

    impl Drop for Swap {
        fn drop(&mut self) {
            if let Some((path, c)) = self.0.take() {
                // SAFETY: the path swapon took.
                unsafe { libc::swapoff(c.as_ptr()) };
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
