// Fuzzing (Tests/Fuzz): what a per-input check reports when an invariant fails, and the one way to demand one.
// The fuzz executables turn it into a crash libFuzzer records; the corpus replay test into a test failure.

/// An invariant a parser or session broke on some input (besides crashing, which needs no reporting).
public struct FuzzViolation: Error, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// Throws `FuzzViolation(message)` unless `condition` holds. The message is built only on failure.
@inline(__always)
func require(_ condition: Bool, _ message: @autoclosure () -> String) throws(FuzzViolation) {
    if !condition { throw FuzzViolation(message()) }
}
