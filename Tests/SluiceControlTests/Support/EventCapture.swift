// Test support: an EventLog sink that keeps every line, parses them as JSON objects and waits for one by name.
import Foundation
import SluiceControl
import Synchronization
import XCTest

final class EventCapture: Sendable {
    private let lines = Mutex<[String]>([])

    /// Pass to `EventLog(sink:)`.
    var sink: EventLog.Sink {
        { [self] line in lines.withLock { $0.append(String(decoding: line, as: UTF8.self)) } }
    }

    var all: [String] { lines.withLock { $0 } }

    /// Every line as a JSON object; a line that is not one fails the test.
    func objects(file: StaticString = #filePath, line: UInt = #line) -> [[String: Any]] {
        all.compactMap { text in
            guard text.hasSuffix("}\n"), !text.dropLast().contains("\n"),
                  let object = (try? JSONSerialization.jsonObject(with: Data(text.utf8))) as? [String: Any] else {
                XCTFail("not one JSON object on one line: \(text.debugDescription)", file: file, line: line)
                return nil
            }
            return object
        }
    }

    /// The lines of `event`, in order.
    func events(_ event: String) -> [[String: Any]] {
        objects().filter { $0["event"] as? String == event }
    }

    /// Waits (bounded) until there are `count` lines of `event`; returns the last of them.
    @discardableResult
    func waitFor(_ event: String, count: Int = 1, timeout: TimeInterval = 10,
                 file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let found = events(event)
            if found.count >= count { return found[count - 1] }
            usleep(10_000)  // polling what was recorded, bounded by the deadline
        }
        XCTFail("no \(count) \(event) lines after \(timeout) s; lines: \(all.joined())", file: file, line: line)
        throw Timeout(event: event)
    }

    struct Timeout: Error {
        var event: String
    }
}
