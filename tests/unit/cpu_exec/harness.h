// Test harness for the engine loop: a VM from make_soft_vm over one RAM region
// [0, 2 MiB) (guest-physical addresses above are MMIO), one vCPU, a PIO page,
// and helpers to enter real mode or flat 32-bit protected mode via set_sregs.
// Guests are hand-assembled byte strings (the comments give the assembly).
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "cpu/backend.h"

namespace anykvm::test {

constexpr uint64_t k_ram_size = 2u << 20;
constexpr uint64_t k_mmio = 0x200000;

struct Guest {
  cpu::MemoryMapSource src;
  std::vector<uint8_t> ram = std::vector<uint8_t>(k_ram_size);
  std::vector<uint8_t> pio = std::vector<uint8_t>(4096);
  std::unique_ptr<cpu::VmBackend> vm;
  std::unique_ptr<cpu::VcpuBackend> vcpu;
  volatile uint8_t immediate_exit = 0;
  std::atomic<bool> kick{false};
  cpu::RunControl ctl;

  Guest() {
    auto map = std::make_shared<cpu::MemoryMap>();
    cpu::RamRegion r;
    r.start = Gpa(0);
    r.size = k_ram_size;
    r.hva = ram.data();
    map->regions.push_back(r);
    src.publish(map);
    vm = cpu::make_soft_vm(src);
    vcpu = vm->create_vcpu(VcpuId(0));
    ctl.immediate_exit = &immediate_exit;
    ctl.kick = &kick;
    ctl.pio_page = pio.data();
  }

  void load(uint64_t addr, const std::vector<uint8_t>& bytes) { std::memcpy(&ram.at(addr), bytes.data(), bytes.size()); }
  uint32_t r32(uint64_t a) const {
    uint32_t v;
    std::memcpy(&v, &ram.at(a), 4);
    return v;
  }
  void w16(uint64_t a, uint16_t v) { std::memcpy(&ram.at(a), &v, 2); }

  static cpu::Segment seg(uint16_t sel, uint64_t base, uint32_t limit, uint8_t type, bool big) {
    cpu::Segment s;
    s.selector = sel;
    s.base = base;
    s.limit = limit;
    s.type = type;
    s.present = 1;
    s.s = 1;
    s.db = big;
    s.g = big;
    return s;
  }

  // Real mode, all segments 0, IP = ip, SP = 0x8000.
  void real_mode(uint16_t ip) {
    cpu::SpecialRegs s = vcpu->get_sregs();
    for (int i = 0; i < 6; ++i) s.seg[i] = seg(0, 0, 0xffff, i == 1 ? 0xb : 0x3, false);
    s.cr0 = 0x10;
    s.idt = {0, 0x3ff};
    ASSERT_TRUE(vcpu->set_sregs(s));
    cpu::Regs r{};
    r.rip = ip;
    r.rflags = 2;
    r.gpr[4] = 0x8000;
    vcpu->set_regs(r);
  }
  // Flat 32-bit protected mode, CPL 0, EIP = eip, ESP = 0x80000.
  void flat32(uint32_t eip) {
    cpu::SpecialRegs s = vcpu->get_sregs();
    for (int i = 0; i < 6; ++i) s.seg[i] = seg(i == 1 ? 0x08 : 0x10, 0, 0xffffffff, i == 1 ? 0xb : 0x3, true);
    s.cr0 = 0x11;
    ASSERT_TRUE(vcpu->set_sregs(s));
    cpu::Regs r{};
    r.rip = eip;
    r.rflags = 2;
    r.gpr[4] = 0x80000;
    vcpu->set_regs(r);
  }

  cpu::VcpuExit run() { return vcpu->run(ctl); }
  cpu::Regs regs() const { return vcpu->get_regs(); }
  uint64_t gpr(int n) const { return vcpu->get_regs().gpr[n]; }
};

}  // namespace anykvm::test
