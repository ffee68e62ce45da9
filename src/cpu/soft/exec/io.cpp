// Port I/O: IN, OUT, INS, OUTS with REP (SDM vol. 1, ch. 19; vol. 2 IN/OUT/
// INS/OUTS). Permission first (check_io: IOPL, TSS bitmap, v86). Exits follow
// KVM: OUT/OUTS are posted (the instruction retires, then the loop exits with
// ExitReason::Io and the data in the PIO page); IN/INS stop the instruction
// (StopInsn) with a PendingIo record and re-execute on the next KVM_RUN,
// taking the data user space left in the PIO page. REP INS/OUTS move several
// elements per exit: up to the end of the memory page, the PIO page and (E)CX.
#include <algorithm>
#include <cstring>

#include "cpu/soft/exec/common.h"
#include "cpu/soft/exec/system.h"
#include "cpu/soft/mmu/mmu.h"
#include "cpu/soft/soft_vcpu.h"

namespace anykvm::soft::ex {
namespace {

constexpr uint32_t k_pio_page = 4096;

inline uint16_t port_of(const Cpu& c, const Insn& i) {
  // E4-E7 take imm8; EC-EF and INS/OUTS take DX.
  return (i.opcode >= 0xe4 && i.opcode <= 0xe7) ? uint16_t(uint8_t(i.imm)) : uint16_t(c.gpr[k_rdx]);
}

void io_exit(Cpu& c, bool out, uint16_t port, unsigned size, uint32_t count) {
  c.exit = cpu::VcpuExit{};
  c.exit.reason = cpu::ExitReason::Io;
  c.exit.io.out = out;
  c.exit.io.size = uint8_t(size);
  c.exit.io.port = port;
  c.exit.io.count = count;
}

// Takes the data of a completed IN/INS if this is the instruction that exited.
inline bool pio_ready(Cpu& c, uint16_t port, unsigned size) {
  const PendingIo& p = c.priv->pio;
  return p.state == PendingIo::State::Ready && p.port == port && p.size == size;
}
[[noreturn]] void pio_wait(Cpu& c, uint16_t port, unsigned size, uint32_t count) {
  PendingIo& p = c.priv->pio;
  p.state = PendingIo::State::Waiting;
  p.port = port;
  p.size = uint8_t(size);
  p.count = count;
  io_exit(c, false, port, size, count);
  throw StopInsn{};
}

template <typename T>
void h_in(Cpu& c, const Insn& i) {
  uint16_t port = port_of(c, i);
  check_io(c, port, sizeof(T));
  T v;
  if (c.local && !pio_ready(c, port, sizeof(T)) && c.local->pio(port, sizeof(T), false, &v)) [[unlikely]] {
    c.set_reg<T>(k_rax, v);  // an in-kernel device (irqchip) answered: no exit
    advance(c, i);
    return;
  }
  if (!pio_ready(c, port, sizeof(T))) pio_wait(c, port, sizeof(T), 1);
  std::memcpy(&v, c.pio_page, sizeof(T));
  c.priv->pio.state = PendingIo::State::Idle;
  c.set_reg<T>(k_rax, v);
  advance(c, i);
}

template <typename T>
void h_out(Cpu& c, const Insn& i) {
  uint16_t port = port_of(c, i);
  check_io(c, port, sizeof(T));
  T v = c.reg<T>(k_rax);
  if (c.local && c.local->pio(port, sizeof(T), true, &v)) [[unlikely]] {
    advance(c, i);  // an in-kernel device (irqchip, ioeventfd) took it: no exit
    if (c.local->take_exit(c.exit)) c.exit_pending = true;
    return;
  }
  std::memcpy(c.pio_page, &v, sizeof(T));
  io_exit(c, true, port, sizeof(T), 1);
  c.exit_pending = true;
  advance(c, i);
}

// Elements of `size` that fit between linear `lin` and the end (DF=0) or the
// start (DF=1) of its page, at least 1.
inline uint32_t page_room(uint64_t lin, unsigned size, bool down) {
  uint64_t off = lin & 0xfff;
  uint64_t r = down ? (off / size) + 1 : (k_pio_page - off) / size;
  return uint32_t(std::max<uint64_t>(r, 1));
}

inline bool is_ram(Cpu& c, uint64_t lin, bool write) {
  uint64_t gpa = c.translate(lin, write, c.cpl == 3, false);
  const cpu::RamRegion* r = mmu_find_region(c, gpa);
  return r && !(write && r->readonly);
}

template <typename T>
void h_ins(Cpu& c, const Insn& i) {
  constexpr unsigned sz = sizeof(T);
  uint16_t port = uint16_t(c.gpr[k_rdx]);
  check_io(c, port, sz);
  const bool rep = i.rep != x86::RepPrefix::None;
  const uint64_t m = addr_mask(i.addrsize);
  const bool down = c.eflags_rest & fl::DF;
  const int64_t d = down ? -int64_t(sz) : int64_t(sz);
  uint64_t total = rep ? get_count(c, i.addrsize) : 1;
  if (total == 0) {
    advance(c, i);
    return;
  }
  uint64_t di = c.gpr[k_rdi] & m;
  if (pio_ready(c, port, sz)) {
    uint32_t n = c.priv->pio.count;
    for (uint32_t k = 0; k < n; ++k) {
      T v;
      std::memcpy(&v, c.pio_page + k * sz, sz);
      c.write<T>(k_es, di, v);
      di = (di + d) & m;
    }
    c.priv->pio.state = PendingIo::State::Idle;
    set_index(c, k_rdi, i.addrsize, di);
    if (rep) set_count(c, i.addrsize, total - n);
    if (!rep || total == n) advance(c, i);
    return;
  }
  uint32_t n = 1;
  if (rep && !(c.eflags_rest & fl::TF)) {  // single-step: one element per trap (SDM vol. 3, 17.3.1.4)
    uint64_t lin = uint32_t(c.seg[k_es].base + di);
    n = uint32_t(std::min<uint64_t>({total, page_room(lin, sz, down), k_pio_page / sz}));
  }
  // Fault before the exit, not after the data arrived.
  uint64_t lo = down ? (di - uint64_t(n - 1) * sz) & m : di;
  c.check_write(k_es, lo, n * sz);
  if (n > 1 && !is_ram(c, uint32_t(c.seg[k_es].base + di), true)) n = 1;
  pio_wait(c, port, sz, n);
}

template <typename T>
void h_outs(Cpu& c, const Insn& i) {
  constexpr unsigned sz = sizeof(T);
  uint16_t port = uint16_t(c.gpr[k_rdx]);
  check_io(c, port, sz);
  const bool rep = i.rep != x86::RepPrefix::None;
  const uint64_t m = addr_mask(i.addrsize);
  const bool down = c.eflags_rest & fl::DF;
  const int64_t d = down ? -int64_t(sz) : int64_t(sz);
  uint64_t total = rep ? get_count(c, i.addrsize) : 1;
  if (total == 0) {
    advance(c, i);
    return;
  }
  uint64_t si = c.gpr[k_rsi] & m;
  T first = c.read<T>(i.seg, si);
  uint32_t n = 1;
  if (rep && !c.mmio_log.count && !(c.eflags_rest & fl::TF)) {  // single-step: one element per trap
    uint64_t lin = uint32_t(c.seg[i.seg].base + si);
    n = uint32_t(std::min<uint64_t>({total, page_room(lin, sz, down), k_pio_page / sz}));
  }
  std::memcpy(c.pio_page, &first, sz);
  uint64_t p = si;
  for (uint32_t k = 1; k < n; ++k) {
    p = (p + d) & m;
    T v = c.read<T>(i.seg, p);
    std::memcpy(c.pio_page + k * sz, &v, sz);
  }
  set_index(c, k_rsi, i.addrsize, (si + int64_t(n) * d) & m);
  if (rep) set_count(c, i.addrsize, total - n);
  io_exit(c, true, port, sz, n);
  c.exit_pending = true;
  if (!rep || total == n) advance(c, i);
}

}  // namespace

void register_io(DispatchTable& t) {
  for (uint8_t op : {0xe4, 0xe5, 0xec, 0xed}) t.set(key1(op), ANYKVM_SIZED(h_in));
  for (uint8_t op : {0xe6, 0xe7, 0xee, 0xef}) t.set(key1(op), ANYKVM_SIZED(h_out));
  t.set(key1(0x6c), ANYKVM_SIZED(h_ins));
  t.set(key1(0x6d), ANYKVM_SIZED(h_ins));
  t.set(key1(0x6e), ANYKVM_SIZED(h_outs));
  t.set(key1(0x6f), ANYKVM_SIZED(h_outs));
}

}  // namespace anykvm::soft::ex
