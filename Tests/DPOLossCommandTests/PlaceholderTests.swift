import DPOLossCommand
import Testing

@Test func placeholderExitsWithUsageError() {
  #expect(runDPOLossCommand([]) == 2)
}
