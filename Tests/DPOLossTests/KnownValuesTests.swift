import Testing
@testable import DPOLoss
@Test func placeholder() { #expect(true) }
