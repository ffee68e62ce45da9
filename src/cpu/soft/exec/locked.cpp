// LOCK-prefixed read-modify-write instructions and XCHG with memory, atomic
// with respect to the other vCPUs of the VM (SDM vol. 3, 9.1.2.2): the
// instruction's handler runs unchanged, but its memory operand is redirected
// (through this vCPU's TLB entry for the page) to a private copy; the result
// is then stored with one host compare-and-swap against the value the handler
// read. If another vCPU changed the operand in between, the registers are put
// back and the instruction runs again. With one vCPU, or when the operand is
// not plain RAM that may be written directly (MMIO, a code page, a watched
// page), split across pages or misaligned, the handler runs as is (the last
// two are atomic on hardware through a bus lock; guests keep their atomics
// aligned).
#include <cstring>

#include "cpu/soft/exec/common.h"
#include "cpu/soft/exec/locked.h"
#include "cpu/soft/soft_vm.h"

namespace anykvm::soft::ex {
namespace {

// Where the instruction's memory operand is (BTS/BTR/BTC with a register bit
// offset address outside the operand: SDM BT "bit base + offset").
struct Operand {
  uint64_t offset;
  unsigned size;
};

Operand locked_operand(const Cpu& c, const Insn& i) {
  uint64_t a = ea(c, i);
  unsigned size = i.opsize;
  if (i.map == x86::OpMap::TwoByte) {
    if (i.opcode == 0xc7) return {a, 8};  // CMPXCHG8B
    if (i.opcode == 0xab || i.opcode == 0xb3 || i.opcode == 0xbb) {
      int64_t off = size == 2 ? int64_t(int16_t(c.gpr[i.reg])) : int64_t(int32_t(c.gpr[i.reg]));
      a = bt_operand_address(i, a, off, size);
    }
  }
  return {a, size};
}

template <typename T>
bool cas(uint8_t* p, const uint8_t* expect, const uint8_t* want) {
  T e, w;
  std::memcpy(&e, expect, sizeof(T));
  std::memcpy(&w, want, sizeof(T));
  return __atomic_compare_exchange_n(reinterpret_cast<T*>(p), &e, w, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

bool cas_sized(unsigned size, uint8_t* p, const uint8_t* expect, const uint8_t* want) {
  switch (size) {
    case 1: return cas<uint8_t>(p, expect, want);
    case 2: return cas<uint16_t>(p, expect, want);
    case 4: return cas<uint32_t>(p, expect, want);
    default: return cas<uint64_t>(p, expect, want);
  }
}

template <typename T>
void atomic_load_to(const uint8_t* p, uint8_t* out) {
  T v = __atomic_load_n(reinterpret_cast<const T*>(p), __ATOMIC_SEQ_CST);
  std::memcpy(out, &v, sizeof(T));
}

void load_sized(unsigned size, const uint8_t* p, uint8_t* out) {
  switch (size) {
    case 1: atomic_load_to<uint8_t>(p, out); break;
    case 2: atomic_load_to<uint16_t>(p, out); break;
    case 4: atomic_load_to<uint32_t>(p, out); break;
    default: atomic_load_to<uint64_t>(p, out); break;
  }
}

// The state a lockable instruction may commit (it touches no other).
struct Snapshot {
  std::array<uint64_t, 16> gpr;
  uint64_t rip;
  uint32_t eflags_rest;
  LazyFlags lf;
  explicit Snapshot(const Cpu& c) : gpr(c.gpr), rip(c.rip), eflags_rest(c.eflags_rest), lf(c.lf) {}
  void restore(Cpu& c) const {
    c.gpr = gpr;
    c.rip = rip;
    c.eflags_rest = eflags_rest;
    c.lf = lf;
  }
};

alignas(4096) thread_local uint8_t t_scratch[4096];

// The handler of a locked instruction, saved by bind_locked in Insn::imm2
// (lockable instructions have no second immediate).
x86::Handler real_handler(const Insn& i) { return reinterpret_cast<x86::Handler>(uintptr_t(i.imm2)); }

void h_locked(Cpu& c, const Insn& i) {
  const x86::Handler real = real_handler(i);
  if (c.vm.vcpu_count() < 2) return real(c, i);
  const Operand op = locked_operand(c, i);
  const uint64_t lin = mmu_seg_linear(c, i.seg, op.offset, op.size, true);
  const uint64_t page = lin & ~uint64_t(0xfff);
  if ((lin & (op.size - 1)) != 0) return real(c, i);  // misaligned (never crosses a page)
  const bool user = c.cpl == 3;
  TlbEntry* e = &c.tlb.entry(user, lin);
  if (e->tag_write != page) {
    c.check_write(i.seg, op.offset, op.size);  // faults as the instruction would; fills the TLB
    e = &c.tlb.entry(user, lin);
    if (e->tag_write != page || e->tag_read != page) return real(c, i);  // not plain RAM
  }
  uint8_t* const host = reinterpret_cast<uint8_t*>(uintptr_t(lin) + e->addend);
  const TlbEntry saved = *e;
  const Snapshot before(c);
  for (;;) {
    uint8_t old[8];
    load_sized(op.size, host, old);
    uint8_t* const scratch = t_scratch + (lin & 0xfff);
    std::memcpy(scratch, old, op.size);
    e->addend = uintptr_t(t_scratch) - page;
    try {
      real(c, i);
    } catch (...) {
      *e = saved;
      throw;
    }
    *e = saved;
    if (cas_sized(op.size, host, old, scratch)) return;
    before.restore(c);  // another vCPU wrote the operand: run it again
  }
}

}  // namespace

void bind_locked(Insn& in) {
  const bool xchg_mem = in.map == x86::OpMap::OneByte && (in.opcode == 0x86 || in.opcode == 0x87) && in.mem;
  if (!(in.lock || xchg_mem) || !in.mem || !in.fn) return;
  in.imm2 = uint64_t(reinterpret_cast<uintptr_t>(in.fn));
  in.fn = h_locked;
}

}  // namespace anykvm::soft::ex
