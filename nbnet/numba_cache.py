"""How nbnet adjusts Numba's disk cache (patch_numba_cache), before anything is compiled: nbnet.config
calls it. This module imports nothing of nbnet's, so that config can.
"""

import functools
import hashlib
from pathlib import Path

# The files whose code ends up inside compiled functions: the kernels, the functions they
# inline or call (vecmath, codes' constants, config's sizes) and the passes that chain them;
# and this one, which decides how their machine code is emitted and what a cache entry holds.
COMPILED_SOURCES = ("codes.py", "config.py", "vecmath.py", "kernels.py", "narrow.py", "epochs.py", "loops.py",
                    "pixels.py", "numba_cache.py")
PACKAGE = Path(__file__).resolve().parent


def patch_numba_cache():
    """Adjust Numba's disk cache for nbnet, before anything is compiled (nbnet.config calls this):

    * stamp_with_compiled_sources: an edit to any of COMPILED_SOURCES makes every nbnet function
      compile again (Numba notices only edits to a function's own file, but a driver holds
      the code of the kernels it calls, from other files);
    * lock_numba_cache_index: concurrent saves of one function's entries keep them all;
    * compile_once_across_processes: processes that need the same function at once compile it
      once, the others load it;
    * collect_garbage_after_compiling: Python's cycle collector waits until a compile ends
      (it took a tenth of a cold start, walking the compiler's objects again and again);
    * load_without_refresh: loading machine code from the cache does not first set up Numba's
      compiler (0.1-0.2 s in a fresh process);
    * parse_linking_code_when_linked: nor does it parse the code that other functions would
      link against, until one does (15 ms of a 25 ms load);
    * drivers_optimised_once: a driver (config.driver) is not optimised again with all the code
      it links in, which was optimised when that was compiled;
    * drivers_call_loaded_code: nor does it link in, and emit machine code again for, the nbnet
      functions it calls: it calls theirs;
    * thread_start_passed_on: a function that calls a parallel one loaded from the cache starts
      Numba's threads when it is itself loaded from the cache (Numba issue 8578: a crash).

    Each is left out, and Numba behaves as it does, when its internals differ from what the
    patch expects."""
    stamp_with_compiled_sources()
    lock_numba_cache_index()
    compile_once_across_processes()
    collect_garbage_after_compiling()
    load_without_refresh()
    parse_linking_code_when_linked()
    drivers_optimised_once()
    drivers_call_loaded_code()
    thread_start_passed_on()


@functools.lru_cache(maxsize=None)
def compiled_sources_digest():
    """A SHA-256 of the files named in COMPILED_SOURCES, as they are on disk now."""
    digest = hashlib.sha256()
    for name in COMPILED_SOURCES:
        path = PACKAGE / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.exists() else b"") + b"\0")
    return digest.hexdigest()


class _CompiledSourcesLocator:
    """Numba's own cache locator for a function of nbnet, with a source stamp that also covers
    every file of COMPILED_SOURCES: Numba drops a function's cache entries when the stamp it
    saved with them differs from the current one."""

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):  # get_cache_path, get_disambiguator, ensure_cache_path, _py_file...
        return getattr(self._inner, name)

    def get_source_stamp(self):
        return (self._inner.get_source_stamp(), compiled_sources_digest())

    @classmethod
    def from_function(cls, py_func, py_file):
        if Path(py_file).resolve().parent != PACKAGE:
            return None
        for other in _cache_impl()._locator_classes:
            inner = None if other is cls else other.from_function(py_func, py_file)
            if inner is not None:
                return cls(inner)
        return None


def _cache_impl():
    """Numba's CacheImpl class (_CacheImpl before Numba 0.61), or None."""
    from numba.core import caching

    return getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl", None)


def stamp_with_compiled_sources():
    """Put _CompiledSourcesLocator first among the locators Numba tries (unless the user chose
    the locators with NUMBA_CACHE_LOCATOR_CLASSES)."""
    locators = getattr(_cache_impl(), "_locator_classes", None)
    if isinstance(locators, list) and _CompiledSourcesLocator not in locators:
        locators.insert(0, _CompiledSourcesLocator)


class CalledCodeMissing(Exception):
    """A cached function calls machine code that this process cannot load (drivers_call_loaded_code)."""


def thread_start_passed_on():
    """Keep, in the code library of a function loaded from the cache, the start-up calls its cache
    entry holds (Numba's `reload_init`: for a parallel function, starting the threads).

    Numba passes these calls on from each library a function links to the function, and saves
    them with it in the cache, but gives a library loaded from the cache none. So a function
    compiled in a process where a parallel function it calls was loaded from the cache (nbnet:
    a narrow network's L-BFGS objective around its parallel gradient pass, compiled in a later
    process than the pass) was saved without them, and when the next process loaded it and
    nothing else had started Numba's threads, its parallel loop crashed (Numba issue 8578;
    tests/test_quasi_newton.py runs the three processes)."""
    try:
        from numba.core.compiler import CompileResult
    except ImportError:
        return
    rebuild = getattr(CompileResult._rebuild, "__func__", None)
    if rebuild is None or getattr(rebuild, "nbnet_passed_on", False) or "reload_init" not in CompileResult._fields:
        return

    def _rebuild(cls, *args, **kwargs):
        result = rebuild(cls, *args, **kwargs)
        starts = getattr(getattr(result, "library", None), "_reload_init", None)
        if result.reload_init and isinstance(starts, set):
            starts.update(result.reload_init)
        return result

    _rebuild.nbnet_passed_on = True
    CompileResult._rebuild = classmethod(_rebuild)


def load_without_refresh():
    """Load cached machine code without Numba's `refresh` of its compiler first.

    Numba's Cache.load_overload refreshes the target context before every load; the first
    refresh in a process imports and registers every implementation Numba has (NumPy's
    functions, typed containers, the random generators...): 0.1-0.2 s, needed to compile a
    function but not to load machine code compiled before. This loads with only the runtime
    that the machine code calls (the NRT) set up, and the generator types nbnet's compiled
    epochs take as arguments registered. A function that is not in the cache is compiled as
    before: Numba's compiler refreshes first."""
    try:
        from numba.core.caching import Cache
        from numba.core.runtime import rtsys
    except ImportError:
        return
    if getattr(Cache.load_overload, "nbnet_unrefreshed", False) or not all(
            hasattr(Cache, name) for name in ("_load_overload", "_guard_against_spurious_io_errors")):
        return

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)
        with self._guard_against_spurious_io_errors():
            try:
                return self._load_overload(sig, target_context)
            except CalledCodeMissing:  # (see drivers_call_loaded_code: compiled again)
                return None

    load_overload.nbnet_unrefreshed = True
    Cache.load_overload = load_overload


def lock_numba_cache_index():
    """Make Numba's cache-entry save atomic across processes.

    Numba (0.59-0.68) saves an entry by reading a function's cache index, adding the key,
    writing the index back, then writing the data file, with no lock: two processes saving
    different signatures of one function at once each drop the other's entry, and a reader
    can see the new key before its data file exists. This replaces that save by the same
    steps under an exclusive flock on INDEX.lock, data file first, so that processes sharing
    a cache (the test suite's two workers, a sweep's workers, a cluster) never lose or
    mis-pair an entry. Left as it is when Numba's internals differ from what it expects."""
    try:
        import fcntl
        import itertools

        from numba.core.caching import IndexDataCacheFile
    except ImportError:
        return
    if cache_saves_locked() or not all(
            hasattr(IndexDataCacheFile, name) for name in ("_load_index", "_save_index", "_save_data", "_data_name")):
        return

    def save(self, key, data):
        with open(self._index_path + ".lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                overloads = self._load_index()  # as it is now, under the lock
                data_name = overloads.get(key)
                if data_name is None:
                    existing = set(overloads.values())
                    data_name = next(name for name in map(self._data_name, itertools.count(1))
                                     if name not in existing)
                self._save_data(data_name, data)  # the data first: a reader never finds a key without it
                if overloads.get(key) != data_name:
                    overloads[key] = data_name
                    self._save_index(overloads)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    save.nbnet_locked = True
    IndexDataCacheFile.save = save


def compile_once_across_processes():
    """Compile an nbnet function in one process at a time: the others wait, then load it.

    Processes that share a kernel cache and need the same function at the same moment (the test
    suite's two workers, a run and its compile helper, a sweep's workers) would each compile it.
    This holds an exclusive flock on INDEX.compile-lock, beside the function's cache index, while
    Numba looks the function up in the cache and, if it is missing, compiles and saves it; a
    process that waited then finds it there. The locks follow the calls (a function is compiled
    before the compile of its caller ends, and no nbnet function calls its callers), so two
    processes never wait for each other. A compile inside a compile of the same function in this
    process does not lock again. Left as it is when Numba's internals differ from what it expects.
    """
    try:
        import fcntl

        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return
    if getattr(Dispatcher.compile, "nbnet_once", False):
        return
    compile_unlocked = Dispatcher.compile
    held = set()  # the index paths whose lock this process holds

    def compile(self, sig):
        path = getattr(getattr(getattr(self, "_cache", None), "_cache_file", None), "_index_path", None)
        if (path is None or path in held or not of_nbnet(self.py_func)
                or (isinstance(sig, tuple) and sig in self.overloads)):  # (compiled here already: no lock)
            return compile_unlocked(self, sig)
        try:
            handle = open(path + ".compile-lock", "a")
        except OSError:
            return compile_unlocked(self, sig)
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            held.add(path)
            try:
                return compile_unlocked(self, sig)
            finally:
                held.discard(path)
                fcntl.flock(handle, fcntl.LOCK_UN)

    compile.nbnet_once = True
    Dispatcher.compile = compile


def collect_garbage_after_compiling():
    """Turn Python's cyclic garbage collector off while Numba compiles (or loads) an nbnet
    function, and back on when that ends.

    Compiling builds hundreds of thousands of Python objects (Numba's IR, types, LLVM IR text)
    that live until the function is done; the collector, counting them as new, walked them and
    everything else in the process over and over: 0.7 s, a tenth of compiling the digits' run in
    one process. Off, it leaves the garbage of one function's compile (tens of MB) until the
    compile ends, when it collects as usual. Nothing else changes (the compiled code is the same)."""
    import gc

    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return
    if getattr(Dispatcher.compile, "nbnet_gc", False):
        return
    compile_collecting = Dispatcher.compile

    def compile(self, sig):
        if not gc.isenabled() or not of_nbnet(self.py_func):
            return compile_collecting(self, sig)
        gc.disable()
        try:
            return compile_collecting(self, sig)
        finally:
            gc.enable()

    compile.nbnet_gc = True
    Dispatcher.compile = compile


def function_key(py_func):
    """(module, qualified name) of the Python function `py_func`."""
    return getattr(py_func, "__module__", None) or "", getattr(py_func, "__qualname__", "<")


def of_nbnet(py_func):
    """Whether the Python function `py_func` is one of nbnet's (its module is in the package)."""
    return function_key(py_func)[0].startswith("nbnet.")


def cache_saves_locked():
    """True when lock_numba_cache_index is in place."""
    from numba.core.caching import IndexDataCacheFile

    return getattr(IndexDataCacheFile.save, "nbnet_locked", False)


def parse_linking_code_when_linked():
    """Load a cached function without parsing the LLVM bitcode of everything it contains.

    A cached function comes as machine code, which runs, and as bitcode, which is only there for
    functions compiled later in the process that call it (they link it in). Numba parses that
    bitcode, and walks it to note every symbol, at each load: 15 ms of a 25 ms load of a
    training pass, and half of a script's first predict. Here the bitcode waits until something
    links the function in, and a symbol asked for before then is looked up in the machine code
    loaded (which is what noting it allowed)."""
    try:
        import llvmlite.binding as ll
        from numba.core import codegen
    except ImportError:
        return
    library, engine = getattr(codegen, "CPUCodeLibrary", None), getattr(codegen, "JitEngine", None)
    needed = ((library, ("_unserialize", "_get_module_for_linking", "_set_compiled_object", "enable_object_caching",
                         "_finalize_final_module")), (engine, ("is_symbol_defined", "_load_defined_symbols")))
    if library is None or engine is None or not all(hasattr(cls, name) for cls, names in needed for name in names):
        return
    if getattr(library._get_module_for_linking, "nbnet_lazy", False):
        return
    unserialize, module_for_linking, is_defined = (library._unserialize.__func__, library._get_module_for_linking,
                                                   engine.is_symbol_defined)

    def _unserialize(cls, codegen_, state):
        name, kind, data = state
        if kind != "object":
            return unserialize(cls, codegen_, state)
        self = codegen_.create_library(name)
        object_code, shared_bitcode = data
        self.enable_object_caching()
        self._set_compiled_object(object_code)
        self._nbnet_bitcode = shared_bitcode
        self._finalize_final_module()
        return self

    def _get_module_for_linking(self):
        bitcode = self.__dict__.pop("_nbnet_bitcode", None)
        if bitcode is not None:
            self._shared_module = ll.parse_bitcode(bitcode)
            self._codegen._engine._load_defined_symbols(self._shared_module)
        return module_for_linking(self)

    def is_symbol_defined(self, name):
        return is_defined(self, name) or self._ee.get_global_value_address(name) != 0

    _get_module_for_linking.nbnet_lazy = True
    library._unserialize = classmethod(_unserialize)
    library._get_module_for_linking = _get_module_for_linking
    engine.is_symbol_defined = is_symbol_defined


# The qualified names of the drivers (config.driver): functions whose own code only chains
# compiled kernels and passes, in loops over layers, minibatches or epochs.
DRIVERS = set()
# The drivers whose `prange` loop only calls one compiled function (config.thin_parallel): the
# parallel kernels of nbnet.kernels.
THIN_PARALLEL = set()


COMPILING = []  # the qualified names of the functions Numba is compiling, innermost last


def track_compiling():
    """Keep COMPILING up to date (once); False where Numba has no compile events."""
    try:
        from numba.core import event
    except ImportError:
        return False
    if not getattr(track_compiling, "done", False):
        class Compiling(event.Listener):
            def on_start(self, ev):
                COMPILING.append(getattr(getattr(ev.data.get("dispatcher"), "py_func", None), "__qualname__", None))

            def on_end(self, ev):
                COMPILING.pop()

        event.register("numba:compile", Compiling())
        track_compiling.done = True
    return True


def compiled_as_driver(library):
    """Whether the Numba code library `library` is a driver's (DRIVERS), or code Numba generated
    for the `prange` loop of a parallel kernel of nbnet.kernels (THIN_PARALLEL)."""
    return library.name in DRIVERS or bool(COMPILING and COMPILING[-1] in THIN_PARALLEL)


def drivers_optimised_once():
    """Compile a driver (a name in DRIVERS) without the second, full optimisation of its final module.

    Numba compiles a function that calls other compiled functions by linking a copy of their
    code (all of it, callees of callees too) into its module, then optimising that module as a
    whole at -O3 and emitting machine code for all of it. For a kernel whose own loops are the
    work, that optimisation is what vectorises them. A driver has no such loops: its module is
    nearly all code that was already optimised when its callees were compiled, and optimising it
    again took half of each driver's compile time (2.2 of 3.9 s for the compiled epochs), for no
    measurable speed (bench/small.py, bench/epoch.py). A driver keeps the cheaper first pass, which
    inlines the small calls and prunes reference counting, and its machine code calls what its
    callees' optimisation made of them. (Numba optimises every module at one level, NUMBA_OPT;
    this chooses per function.)

    The same holds for the code Numba generates for the `prange` loop of a parallel kernel of
    nbnet.kernels (THIN_PARALLEL), whose loop only calls the kernel's compiled body: the loop's
    body, compiled as a function of its own, and two wrappers that start the threads; each of the
    three re-optimised all of the kernel's code (0.6 s of a parallel kernel's 1.8 s). (The
    `prange` loops of nbnet.narrow's drivers keep it: their fits of small data sets ran 4-14 %
    slower without.)"""
    try:
        from numba.core import codegen, config
    except ImportError:
        return
    library = getattr(codegen, "CPUCodeLibrary", None)
    needed = ("_optimize_final_module", "_codegen", "_final_module", "_recorded_timings", "name")
    if library is None or not hasattr(library, needed[0]) or not hasattr(codegen, "remove_redundant_nrt_refct"):
        return
    if getattr(library._optimize_final_module, "nbnet_drivers", False) or not track_compiling():
        return
    optimize_final_module = library._optimize_final_module

    def _optimize_final_module(self):
        if not compiled_as_driver(self) or not all(hasattr(self, name) for name in needed[1:]):
            return optimize_final_module(self)
        mpm, mpb = self._codegen._module_pass_manager(loop_vectorize=self._codegen._loopvect, slp_vectorize=False,
                                                      opt=self._codegen._opt_level, cost="cheap")
        with self._recorded_timings.record("Module passes (cheap optimization for refprune)", mpb):
            mpm.run(self._final_module, mpb)
        if not config.LLVM_REFPRUNE_PASS:
            self._final_module = codegen.remove_redundant_nrt_refct(self._final_module)

    _optimize_final_module.nbnet_drivers = True
    library._optimize_final_module = _optimize_final_module


NBNET_DISPATCHERS = {}  # (module, qualified name) -> each nbnet Dispatcher (None where two share them)
COMPILED = {}  # the symbol of each nbnet function compiled or loaded here -> (module, qualified name, argument types)


# The modules whose compiled functions a driver calls as loaded instead of linking a copy of them in
# (drivers_call_loaded_code): nbnet.kernels' bodies, loop nests, parallel kernels and drivers,
# hundreds to thousands of instructions each, which LLVM would not inline into a driver anyway.
# (nbnet.narrow's kernels stay copied: inlined into its drivers, small fits ran 4-8 % faster.)
CALLED_MODULES = ("nbnet.kernels",)


def drivers_call_loaded_code():
    """A driver's machine code calls the kernels it calls, as loaded, instead of holding a copy.

    Numba links a copy of each function a function calls into its module, and emits machine
    code for all of it: the compiled epochs of the digits emitted the code of every kernel once
    more, on top of each kernel's own copies; a parallel kernel's three `prange` functions each
    emitted the kernel's body again. A driver (drivers_optimised_once) does not link in the
    functions of CALLED_MODULES it calls, which this process has compiled or loaded already: its
    module declares them, and its machine code calls theirs. LLVM would not inline them into a
    driver anyway (kernel bodies, loop nests, parallel kernels and drivers: hundreds to
    thousands of instructions each). Copies of them that still come in inside other linked code
    become `available_externally` once LLVM has optimised the driver (no machine code is
    emitted for them) and return to copies for whatever links the driver in later. The small
    functions, nbnet.vecmath's and nbnet.narrow's, are linked and copied as before: inlined,
    they make the small fits faster, and a script's first fit loads 2 functions instead of 26.
    Compiling the MNIST command in one process took 9.8-10.0 s instead of 12.0 s; the machine
    code emitted fell from 4.7 s to 1.8 s of it.

    A function's disk-cache entry then names the kernels its machine code calls (symbol, module,
    qualified name, argument types); loading it loads them first. When one of them cannot be
    loaded as that symbol (its cache entry was compiled again since), the function is compiled
    again too, like any function missing from the cache. Left as it is when Numba's internals
    differ from what this expects."""
    try:
        import llvmlite.binding as ll
        from numba.core import codegen
        from numba.core.caching import Cache
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return
    library = getattr(codegen, "CPUCodeLibrary", None)
    needed = ("finalize", "_finalize_final_module", "serialize_using_object_code", "_unserialize",
              "_final_module", "_codegen", "_linking_libraries", "_reload_init")
    if (library is None or not all(hasattr(library, name) for name in needed[:4])
            or not hasattr(Dispatcher, "add_overload") or not hasattr(ll.Linkage, "available_externally")
            or not getattr(Cache.load_overload, "nbnet_unrefreshed", False) or not track_compiling()):
        return
    if getattr(library._finalize_final_module, "nbnet_calls", False):
        return
    init, add_overload = Dispatcher.__init__, Dispatcher.add_overload
    finalize, finalize_final_module = library.finalize, library._finalize_final_module
    serialize, unserialize = library.serialize_using_object_code, library._unserialize.__func__

    def __init__(self, py_func, *args, **kwargs):
        init(self, py_func, *args, **kwargs)
        key = function_key(py_func)
        if of_nbnet(py_func) and "<" not in key[1]:
            NBNET_DISPATCHERS[key] = None if key in NBNET_DISPATCHERS else self

    def add_overload_(self, cres):
        add_overload(self, cres)
        key = function_key(self.py_func)
        if NBNET_DISPATCHERS.get(key) is self and getattr(cres, "fndesc", None) is not None:
            COMPILED[cres.fndesc.mangled_name] = key + (tuple(cres.signature.args),)
            cres.library._nbnet_symbol = cres.fndesc.mangled_name

    def finalize_(self):
        if not compiled_as_driver(self) or not all(hasattr(self, name) for name in needed[4:]):
            return finalize(self)
        linked = self._linking_libraries
        called = [other for other in linked if called_not_copied(getattr(other, "_nbnet_symbol", None))]
        for other in called:
            self._reload_init.update(other._reload_init)  # (what Numba's linking would have passed on)
        self._linking_libraries = [other for other in linked if other not in called]
        try:
            return finalize(self)
        finally:
            self._linking_libraries = linked

    def _finalize_final_module(self):
        if not all(hasattr(self, name) for name in needed[4:]):
            return finalize_final_module(self)
        functions = list(self._final_module.functions)
        declared = [fn for fn in functions if fn.is_declaration and fn.name in COMPILED]
        copies = [fn for fn in functions if compiled_as_driver(self) and called_not_copied(fn.name)
                  and not fn.is_declaration and fn.linkage == ll.Linkage.linkonce_odr
                  and self._codegen._engine.is_symbol_defined(fn.name)]
        for fn in copies:
            fn.linkage = ll.Linkage.available_externally
        try:
            finalize_final_module(self)
        finally:
            for fn in copies:
                fn.linkage = ll.Linkage.linkonce_odr
        if declared or copies:
            self._nbnet_calls = [(fn.name,) + COMPILED[fn.name] for fn in declared + copies]

    def serialize_using_object_code(self):
        name, kind, data = serialize(self)
        calls = getattr(self, "_nbnet_calls", None)
        return (name, kind, (*data, calls)) if calls and kind == "object" else (name, kind, data)

    def _unserialize(cls, codegen_, state):
        name, kind, data = state
        if kind == "object" and len(data) == 3:  # (written by serialize_using_object_code above)
            *data, calls = data
            load_called_code(codegen_._engine, calls)
            state = (name, kind, tuple(data))
        return unserialize(cls, codegen_, state)

    _finalize_final_module.nbnet_calls = True
    Dispatcher.__init__, Dispatcher.add_overload = __init__, add_overload_
    library.finalize, library._finalize_final_module = finalize_, _finalize_final_module
    library.serialize_using_object_code = serialize_using_object_code
    library._unserialize = classmethod(_unserialize)


def called_not_copied(symbol):
    """Whether a driver calls the function `symbol` as loaded instead of holding a copy of it: a
    function of CALLED_MODULES compiled or loaded in this process (COMPILED)."""
    entry = COMPILED.get(symbol)
    return entry is not None and entry[0] in CALLED_MODULES


def load_called_code(engine, calls):
    """Load (from the disk cache, or compile) each nbnet function of `calls` that `engine` does
    not hold yet (see drivers_call_loaded_code); CalledCodeMissing when one is not there
    under the symbol a cached driver calls."""
    import importlib

    for symbol, module, qualname, args in calls:
        if not engine.is_symbol_defined(symbol):
            importlib.import_module(module)
            dispatcher = NBNET_DISPATCHERS.get((module, qualname))
            if dispatcher is not None:
                dispatcher.compile(args)
        if not engine.is_symbol_defined(symbol):
            raise CalledCodeMissing(symbol)
        COMPILED.setdefault(symbol, (module, qualname, args))  # (loaded, maybe inside another function's code)
