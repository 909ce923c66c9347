// Fuzzing (Tests/Fuzz): the libFuzzer executable for the HTTP/2 server session fed client bytes (H2SessionCheck); `make fuzz` builds and runs it.
// The per-input check lives in SluiceFuzzChecks, shared with the corpus replay test.
import SluiceFuzzChecks

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzInput(_ data: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    fuzzOne(data, count, H2SessionCheck.check)
}

@main
struct FuzzH2Session {
    static func main() {
        #if FUZZING
        FuzzDriver.run(fuzzInput)
        #else
        print("FuzzH2Session is a libFuzzer target: build and run it with `make fuzz` (-DFUZZING -sanitize=fuzzer,address).")
        #endif
    }
}
