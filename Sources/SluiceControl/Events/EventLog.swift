// Control layer: where every event goes — one JSON line on stderr each, and the last few per InferenceService in
// memory (for `sluice describe` and the events API), with a count per reason for /metrics.
import Foundation
import SluiceIO
import SluiceProxy
import Synchronization

public final class EventLog: Sendable {
    /// Events kept per InferenceService (repeats fold into one); the oldest go first.
    public static let keptPerService = 50

    /// Receives each finished line (stderr in `sluice serve`; tests capture them).
    public typealias Sink = @Sendable ([UInt8]) -> Void

    public static let standardError: Sink = { line in line.withUnsafeBytes { Posix.writeStderr($0) } }

    private struct State {
        var byService: [Event.Involved: [StoredEvent]] = [:]
        var countsByReason: [String: UInt64] = [:]
    }

    private let state = Mutex(State())
    private let sink: Sink

    public init(sink: @escaping Sink = EventLog.standardError) {
        self.sink = sink
    }

    /// Writes the event's line and, for an event about an InferenceService, keeps it (or counts a repeat).
    public func record(_ event: Event, at now: Date = Date()) {
        let line = event.line
        state.withLock { state in
            // Written under the lock, so that lines reach stderr in the order the events were recorded.
            sink(line)
            state.countsByReason[event.reason, default: 0] += 1
            guard let involved = event.involved else { return }
            var kept = state.byService[involved] ?? []
            if let index = kept.lastIndex(where: { $0.isRepeat(of: event) }) {
                var repeated = kept.remove(at: index)
                repeated.count += 1
                repeated.lastTimestamp = now
                kept.append(repeated)
            } else {
                let names = Set(kept.map(\.objectName))
                var nanoseconds = UInt64(max(0, now.timeIntervalSince1970) * 1e9)
                var objectName = Self.objectName(involved, nanoseconds)
                while names.contains(objectName) {
                    nanoseconds += 1
                    objectName = Self.objectName(involved, nanoseconds)
                }
                kept.append(StoredEvent(objectName: objectName, involved: involved, type: event.kubernetesType, reason: event.reason,
                                        message: event.message, count: 1, firstTimestamp: now, lastTimestamp: now))
                if kept.count > Self.keptPerService { kept.removeFirst(kept.count - Self.keptPerService) }
            }
            state.byService[involved] = kept
        }
    }

    /// The service's events, least recent first (by last occurrence), as kubectl describe lists them.
    public func events(namespace: String, name: String) -> [StoredEvent] {
        state.withLock { $0.byService[Event.Involved(namespace: namespace, name: name)] ?? [] }
    }

    /// Drops a deleted service's events, so that memory stays bounded by the services that exist.
    public func forget(namespace: String, name: String) {
        _ = state.withLock { $0.byService.removeValue(forKey: Event.Involved(namespace: namespace, name: name)) }
    }

    /// `sluice_events_total{reason}`.
    public func writeMetrics(into exposition: inout MetricsExposition) {
        let counts = state.withLock { $0.countsByReason }
        exposition.family("sluice_events", .counter, help: "Events recorded (JSON lines on stderr), by reason.")
        for (reason, count) in counts.sorted(by: { $0.key < $1.key }) {
            exposition.counter(MetricLabels(["reason": reason]), count)
        }
    }

    private static func objectName(_ involved: Event.Involved, _ nanoseconds: UInt64) -> String {
        let hex = String(nanoseconds, radix: 16)
        return involved.name + "." + String(repeating: "0", count: max(0, 16 - hex.count)) + hex
    }
}
