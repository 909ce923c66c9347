// Fuzzing (Tests/Fuzz): the libFuzzer entry shared by the fuzz executables. Only in `make fuzz` builds (-DFUZZING,
// -sanitize=fuzzer,address); without them the executables are stubs, so a plain `swift build` links them.
#if FUZZING
import Glibc

/// libFuzzer's driver (libclang_rt.fuzzer). An executable calls it from its own `main`: SwiftPM renames an
/// executable's `main` (`--defsym main=<Module>_main`), so libFuzzer's own `main` cannot be used, and without
/// `@main` the synthesised empty `main` wins and the binary fuzzes nothing (hardening.md §6.2).
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

public enum FuzzDriver {
    /// Runs libFuzzer with this process's arguments over `callback` and exits with its status.
    public static func run(_ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> Never {
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, callback))
    }
}
#endif

/// One fuzz input through `check`: a violated invariant is a crash, which is what libFuzzer records and minimises.
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ count: Int, _ check: (UnsafeRawBufferPointer) throws(FuzzViolation) -> Void) -> CInt {
    do {
        try check(UnsafeRawBufferPointer(start: data, count: count))
    } catch {
        fatalError("fuzz invariant violated: \(error.description)")
    }
    return 0
}
