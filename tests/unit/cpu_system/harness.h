// Test harness for the system area: one vCPU over a RAM region at GPA 0 (with
// an MMIO hole above it), descriptor builders, and a tiny "execute one
// decoded instruction" helper that mimics the engine loop's contract (handler,
// then Fault -> deliver_exception, StopInsn -> exit). Instructions are given
// as hand-built Insn records because the decoder belongs to the engine core.
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <vector>

#include "cpu/soft/cpu.h"
#include "cpu/soft/events/debug.h"
#include "cpu/soft/exec/system.h"
#include "cpu/soft/mmu/descriptor.h"
#include "cpu/soft/mmu/mmu.h"
#include "cpu/soft/soft_vm.h"

namespace anykvm::soft::test {

constexpr uint64_t k_ram = 8u << 20;  // RAM at [0, 8 MiB); MMIO above
constexpr uint64_t k_gdt = 0x1000, k_idt = 0x2000, k_tss = 0x3000, k_tss2 = 0x3800;

inline uint64_t seg_desc(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags = 0xc) {
  return (uint64_t(limit) & 0xffff) | (uint64_t(base & 0xffffff) << 16) | (uint64_t(access) << 40) |
         (uint64_t((limit >> 16) & 0xf) << 48) | (uint64_t(flags & 0xf) << 52) | (uint64_t(base >> 24) << 56);
}
inline uint64_t gate_desc(uint16_t sel, uint32_t off, uint8_t access, uint8_t params = 0) {
  return (uint64_t(off) & 0xffff) | (uint64_t(sel) << 16) | (uint64_t(params) << 32) | (uint64_t(access) << 40) |
         (uint64_t(off >> 16) << 48);
}

// Selectors of the standard GDT.
enum : uint16_t { CODE0 = 0x08, DATA0 = 0x10, CODE3 = 0x1b, DATA3 = 0x23, TSS_A = 0x28, TSS_B = 0x30,
                  CALLGATE = 0x3b, DATA0_16 = 0x40 };

struct Machine {
  cpu::MemoryMapSource src;
  std::vector<uint8_t> ram = std::vector<uint8_t>(k_ram);
  std::unique_ptr<std::atomic<uint64_t>[]> dirty{new std::atomic<uint64_t>[k_ram / 4096 / 64]{}};
  std::unique_ptr<SoftVm> vm;
  std::unique_ptr<Cpu> cpu;
  x86::DispatchTable table;

  explicit Machine(bool log_dirty = false, bool readonly_top = false) {
    auto map = std::make_shared<cpu::MemoryMap>();
    cpu::RamRegion r;
    r.start = Gpa(0);
    r.size = readonly_top ? k_ram - 0x100000 : k_ram;
    r.hva = ram.data();
    r.dirty_bitmap = log_dirty ? dirty.get() : nullptr;
    map->regions.push_back(r);
    if (readonly_top) {
      cpu::RamRegion ro;
      ro.start = Gpa(k_ram - 0x100000);
      ro.size = 0x100000;
      ro.hva = ram.data() + ro.start.raw();
      ro.readonly = true;
      map->regions.push_back(ro);
    }
    src.publish(map);
    vm = std::make_unique<SoftVm>(src);
    cpu = std::make_unique<Cpu>(*vm, VcpuId(0));
    register_system_handlers(table);
    real_mode();
  }
  Cpu& c() { return *cpu; }

  void w8(uint64_t a, uint8_t v) { ram.at(a) = v; }
  void w16(uint64_t a, uint16_t v) { std::memcpy(&ram.at(a + 1) - 1, &v, 2); }
  void w32(uint64_t a, uint32_t v) { std::memcpy(&ram.at(a + 3) - 3, &v, 4); }
  void w64(uint64_t a, uint64_t v) { std::memcpy(&ram.at(a + 7) - 7, &v, 8); }
  uint8_t r8(uint64_t a) const { return ram.at(a); }
  uint16_t r16(uint64_t a) const { uint16_t v; std::memcpy(&v, &ram.at(a + 1) - 1, 2); return v; }
  uint32_t r32(uint64_t a) const { uint32_t v; std::memcpy(&v, &ram.at(a + 3) - 3, 4); return v; }
  uint64_t r64(uint64_t a) const { uint64_t v; std::memcpy(&v, &ram.at(a + 7) - 7, 8); return v; }

  static Segment real_seg(uint16_t sel, uint8_t type) {
    Segment s{};
    s.selector = sel;
    s.base = uint64_t(sel) << 4;
    s.limit = 0xffff;
    s.type = type;
    s.s = 1;
    s.present = 1;
    return s;
  }
  // Reset-like real mode state: all segments 0, 64 KiB limits.
  void real_mode() {
    Cpu& x = c();
    x.cr0 = cr0::ET;
    x.cpl = 0;
    for (int i = 0; i < 6; ++i) x.seg[i] = real_seg(0, i == 1 ? 0xb : 0x3);
    x.idtr = {0, 0x3ff};
    x.set_eflags(fl::FIXED1);
    x.gpr[4] = 0x8000;
    x.tr = Segment{};
    x.tr.type = 0xb;
    x.tr.present = 1;
    x.tr.limit = 0xffff;
    x.tlb_flush_all();
  }

  // Flat 32-bit protected mode, ring 0, GDT/IDT/TSS at fixed addresses.
  void protected_mode() {
    Cpu& x = c();
    w64(k_gdt + 0x00, 0);
    w64(k_gdt + 0x08, seg_desc(0, 0xfffff, 0x9b));
    w64(k_gdt + 0x10, seg_desc(0, 0xfffff, 0x93));
    w64(k_gdt + 0x18, seg_desc(0, 0xfffff, 0xfb));
    w64(k_gdt + 0x20, seg_desc(0, 0xfffff, 0xf3));
    w64(k_gdt + 0x28, seg_desc(k_tss, 0x67 + 0x2000 / 8 + 1, 0x8b, 0));  // busy: it is TR
    w64(k_gdt + 0x30, seg_desc(k_tss2, 0x67, 0x89, 0));
    w64(k_gdt + 0x40, seg_desc(0, 0xffff, 0x93, 0));
    x.gdtr = {k_gdt, 0x7f};
    x.idtr = {k_idt, 0x7ff};
    x.cr0 = cr0::PE | cr0::ET;
    x.cpl = 0;
    x.load_segment(1, CODE0);  // same-privilege CS load
    for (uint8_t s : {0, 2, 3, 4, 5}) x.load_segment(s, DATA0);
    // Ring-0 stack in the TSS, an all-ones I/O bitmap after it.
    w32(k_tss + 4, 0x90000);
    w16(k_tss + 8, DATA0);
    w16(k_tss + 0x66, 0x68);
    for (uint32_t i = 0; i < 0x2000 / 8 + 1; ++i) w8(k_tss + 0x68 + i, 0xff);
    Descriptor d;
    read_descriptor(x, TSS_A, d);
    x.tr = d.to_segment(TSS_A);
    x.gpr[4] = 0x80000;
    x.set_eflags(fl::FIXED1);
  }

  void idt_gate(uint8_t vec, uint64_t raw) { w64(c().idtr.base + vec * 8, raw); }

  // Runs one decoded instruction the way the engine loop does.
  enum class Outcome { Retired, Faulted, Stopped };
  Outcome exec(const x86::Insn& in) {
    x86::OpKey k{in.map, in.opcode};
    k.group = in.has_modrm ? int8_t((in.modrm >> 3) & 7) : int8_t(-1);
    k.modrm_class = in.has_modrm ? int8_t(in.mem ? 0 : 1) : int8_t(-1);
    x86::Handler h = table.lookup(k, in.opsize);
    if (!h) {
      k.group = -1;
      h = table.lookup(k, in.opsize);
    }
    EXPECT_NE(h, nullptr) << "no handler for opcode " << int(in.opcode);
    if (!h) return Outcome::Faulted;
    mmio_reenter(c());
    try {
      h(c(), in);
    } catch (const Fault& f) {
      last_fault = f;
      c().deliver_exception(f);
      return Outcome::Faulted;
    } catch (const StopInsn&) {
      return Outcome::Stopped;
    }
    mmio_retire(c());
    return Outcome::Retired;
  }
  Fault last_fault{Vec::DE};
};

// Instruction builders (fields the system handlers read).
inline x86::Insn op1(uint8_t opcode, uint8_t len = 1, uint8_t opsize = 4) {
  x86::Insn i;
  i.opcode = opcode;
  i.map = x86::OpMap::OneByte;
  i.len = len;
  i.opsize = opsize;
  return i;
}
inline x86::Insn op2(uint8_t opcode, uint8_t len = 2, uint8_t opsize = 4) {
  x86::Insn i = op1(opcode, len, opsize);
  i.map = x86::OpMap::TwoByte;
  return i;
}
// ModRM register form: reg field and r/m register.
inline x86::Insn with_reg(x86::Insn i, uint8_t reg, uint8_t rm) {
  i.has_modrm = true;
  i.mem = false;
  i.modrm = uint8_t(0xc0 | (reg << 3) | rm);
  i.reg = reg;
  i.rm = rm;
  return i;
}
// ModRM memory form [disp32] in DS.
inline x86::Insn with_mem(x86::Insn i, uint8_t reg, uint32_t disp, uint8_t seg = 3) {
  i.has_modrm = true;
  i.mem = true;
  i.modrm = uint8_t(0x05 | (reg << 3));
  i.reg = reg;
  i.disp = disp;
  i.seg = seg;
  i.addrsize = 4;
  return i;
}

}  // namespace anykvm::soft::test
