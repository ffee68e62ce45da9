// events/ internals: event delivery (SDM vol. 3, ch. 6), far control
// transfers through gates (5.8), hardware task switches (ch. 7), IRET, and a
// stack accessor on an explicit SS (privilege changes push on a stack that is
// not loaded yet). Used by exec/system*.cpp. vCPU thread only.
#pragma once
#include <cstdint>

#include "cpu/soft/cpu.h"
#include "cpu/soft/mmu/descriptor.h"

namespace anykvm::soft {

// How an event reached delivery; decides the gate DPL check and EXT bit (6.13).
enum class EventKind : uint8_t {
  Exception,     // fault/trap/abort raised by the CPU (EXT = 1)
  External,      // INTR from the interrupt controller / KVM_INTERRUPT (EXT = 1)
  Nmi,
  SoftInt,       // INT n, INT3, INTO: gate DPL >= CPL required, EXT = 0
  Icebp,         // INT1 (F1): delivered like a hardware #DB, no DPL check
};

// Delivers one event through the IVT/IDT; throws Fault when delivery itself
// faults (the caller escalates). `return_ip` is the EIP pushed.
void deliver_event(Cpu& c, uint8_t vector, EventKind kind, bool has_ec, uint32_t ec, uint64_t return_ip);

// Escalation wrapper (6.15, "Conditions for Generating a Double Fault").
void deliver_with_escalation(Cpu& c, uint8_t vector, EventKind kind, bool has_ec, uint32_t ec, uint64_t return_ip);

// Why a task switch happens (7.3): decides busy bits, NT and the back-link.
enum class TaskSwitchReason : uint8_t { Jmp, Call, Iret, Int };
// Switches to the task whose TSS descriptor is `sel` (already read as `d` at
// `daddr`). `next_eip` is the EIP saved in the outgoing TSS. Pushes `ec` on the
// new task's stack when `has_ec` (exceptions through a task gate).
void task_switch(Cpu& c, uint16_t sel, Descriptor d, uint64_t daddr, TaskSwitchReason why, uint64_t next_eip,
                 bool has_ec = false, uint32_t ec = 0);

// Far transfers (protected mode checks; real/v86 forms handled inside).
void far_jmp(Cpu& c, uint16_t sel, uint32_t offset, uint8_t opsize, uint64_t next_eip);
void far_call(Cpu& c, uint16_t sel, uint32_t offset, uint8_t opsize, uint64_t next_eip);
void far_ret(Cpu& c, uint8_t opsize, uint16_t pop_bytes);
// `next_eip` is saved in the outgoing TSS when IRET returns from a nested task.
void iret(Cpu& c, uint8_t opsize, uint64_t next_eip);

// Loads CS for a transfer that lands at privilege `new_cpl`, setting cpl.
void commit_cs(Cpu& c, const Descriptor& d, uint16_t sel, uint8_t new_cpl);
// After a return to an outer privilege level: data segment registers the new
// CPL may not use become null (SDM RET/IRET operation).
void null_inaccessible_segments(Cpu& c);

// Stack on an explicit SS, not yet loaded (privilege changes, task switches).
// Pushes write memory immediately; `sp` is committed by the caller.
struct StackAccess {
  Cpu& c;
  Segment ss;
  uint64_t sp;
  bool user;          // privilege of the accesses (the new CPL == 3)
  uint32_t fault_ec;  // #SS error code on limit violations

  uint64_t sp_mask() const { return ss.db ? 0xffffffffull : 0xffffull; }
  uint64_t check(uint64_t off, unsigned size) const {
    uint64_t last = off + size - 1;
    bool bad;
    if ((ss.type & 0xc) == 0x4) {  // expand-down data
      uint64_t upper = ss.db ? 0xffffffffull : 0xffffull;
      bad = off <= ss.limit || last > upper;
    } else {
      bad = last > ss.limit;
    }
    if (bad) throw fault(Vec::SS, fault_ec);
    return uint32_t(ss.base + off);
  }
  void push(uint32_t v, unsigned size) {
    uint64_t nsp = (sp - size) & sp_mask();
    uint64_t lin = check(nsp, size);
    if (size == 4) c.write_linear<uint32_t>(lin, v, user);
    else c.write_linear<uint16_t>(lin, uint16_t(v), user);
    sp = (sp & ~sp_mask()) | nsp;
  }
  uint32_t pop(unsigned size) {
    uint64_t off = sp & sp_mask();
    uint64_t lin = check(off, size);
    uint32_t v = size == 4 ? c.read_linear<uint32_t>(lin, user) : c.read_linear<uint16_t>(lin, user);
    sp = (sp & ~sp_mask()) | ((off + size) & sp_mask());
    return v;
  }
  // Stores the new stack pointer (bits outside the SS width are kept, 6.12.1).
  void commit_sp() const {
    if (ss.db) c.gpr[4] = uint32_t(sp);
    else c.gpr[4] = (c.gpr[4] & ~0xffffull) | (sp & 0xffff);
  }
};

// The ring-`dpl` stack from the current TSS, with the #TS/#SS checks of a
// privilege change (SDM vol. 3, 6.12.1 and CALL operation). `ext` goes into
// the error codes.
StackAccess inner_stack(Cpu& c, uint8_t dpl, uint32_t ext);

inline StackAccess current_stack(Cpu& c) {
  return StackAccess{c, c.seg[sreg::SS], c.gpr[4], c.cpl == 3, 0};
}

// EIP masked to the current code size.
inline uint64_t ip_mask(const Cpu& c) { return c.code32() ? 0xffffffffull : 0xffffull; }

}  // namespace anykvm::soft
