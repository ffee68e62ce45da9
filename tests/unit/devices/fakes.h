// Test doubles for the devices' injected edges: a wire that records its
// edges, and an APIC bus that records messages and EOIs.
#pragma once
#include <vector>

#include "devices/apic_bus.h"
#include "devices/edges.h"

namespace anykvm::devices::test {

struct RecordingLine final : IrqLine {
  bool level = false;
  int rising = 0;
  void set_level(bool l) override {
    if (l && !level) ++rising;
    level = l;
  }
};

struct RecordingBus final : ApicBus {
  std::vector<ApicMessage> messages;
  std::vector<uint8_t> eois;
  std::vector<uint8_t> edge_eois;
  int answer = 1;
  int deliver(const ApicMessage& msg, Lapic*) override {
    messages.push_back(msg);
    return answer;
  }
  void broadcast_eoi(Vector v) override { eois.push_back(v.raw()); }
  void edge_eoi(Vector v) override { edge_eois.push_back(v.raw()); }
};

}  // namespace anykvm::devices::test
