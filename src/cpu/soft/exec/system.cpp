// Registration of the system area's handlers and the I/O permission check
// (SDM vol. 1, 19.5 I/O privilege level, 19.5.2 I/O permission bit map;
// vol. 3, 20.2.8 I/O in virtual-8086 mode).
#include "cpu/soft/exec/system.h"

#include "cpu/soft/cpu.h"
#include "cpu/soft/exec/system_handlers.h"
#include "cpu/soft/mmu/descriptor.h"

namespace anykvm::soft {
namespace {
constexpr uint32_t k_tss32_iomap_base = 0x66;  // offset of the I/O map base in a 32-bit TSS
constexpr uint32_t k_tss32_min_limit = 0x67;
}  // namespace

void register_system_handlers(x86::DispatchTable& t) {
  register_system_flow(t);
  register_system_tables(t);
  register_system_cr(t);
  register_system_msr(t);
}

void check_io(Cpu& c, uint16_t port, unsigned size) {
  if (!c.protected_mode()) return;
  if (!c.v86() && c.cpl <= c.iopl()) return;
  // Only a 32-bit TSS has an I/O bitmap; every bit of the access must be 0.
  const Segment& tr = c.tr;
  bool tss32 = !tr.unusable && (tr.type == uint8_t(SysType::Tss32Busy) || tr.type == uint8_t(SysType::Tss32Avail));
  if (!tss32 || tr.limit < k_tss32_min_limit) throw fault(Vec::GP, 0);
  uint32_t base = c.read_linear<uint16_t>(uint32_t(tr.base + k_tss32_iomap_base), false);
  uint32_t off = base + port / 8;
  if (uint64_t(off) + 1 > tr.limit) throw fault(Vec::GP, 0);
  uint16_t bits = c.read_linear<uint16_t>(uint32_t(tr.base + off), false);
  uint16_t mask = uint16_t(((1u << size) - 1) << (port & 7));
  if (bits & mask) throw fault(Vec::GP, 0);
}

}  // namespace anykvm::soft
