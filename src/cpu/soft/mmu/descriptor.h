// Segment and gate descriptors as they sit in the GDT/LDT/IDT (SDM vol. 3,
// 3.4.5 and 5.8-5.12, 7.2), and the helpers that read them and set their
// accessed/busy bits. Used by mmu/segment.cpp, events/ and exec/system.
// Leaves out: 16-byte long-mode system descriptors.
#pragma once
#include <cstdint>

#include "cpu/soft/cpu.h"

namespace anykvm::soft {

// System-segment and gate types (s = 0), SDM vol. 3, table 3-2.
enum class SysType : uint8_t {
  Tss16Avail = 1, Ldt = 2, Tss16Busy = 3, CallGate16 = 4, TaskGate = 5, IntGate16 = 6, TrapGate16 = 7,
  Tss32Avail = 9, Tss32Busy = 11, CallGate32 = 12, IntGate32 = 14, TrapGate32 = 15,
};
constexpr uint8_t k_tss_busy_bit = 2;  // type bit that marks a TSS busy

namespace sreg {
constexpr uint8_t ES = 0, CS = 1, SS = 2, DS = 3, FS = 4, GS = 5;
}

struct Descriptor {
  uint64_t raw = 0;

  uint32_t base() const { return uint32_t(((raw >> 16) & 0xffffff) | ((raw >> 32) & 0xff000000u)); }
  uint32_t raw_limit() const { return uint32_t((raw & 0xffff) | ((raw >> 32) & 0xf0000)); }
  bool g() const { return (raw >> 55) & 1; }
  uint32_t limit() const { return g() ? (raw_limit() << 12) | 0xfff : raw_limit(); }
  uint8_t type() const { return (raw >> 40) & 0xf; }
  SysType sys_type() const { return SysType(type()); }
  bool s() const { return (raw >> 44) & 1; }
  uint8_t dpl() const { return (raw >> 45) & 3; }
  bool present() const { return (raw >> 47) & 1; }
  bool avl() const { return (raw >> 52) & 1; }
  bool l() const { return (raw >> 53) & 1; }
  bool db() const { return (raw >> 54) & 1; }

  bool is_code() const { return s() && (type() & 8); }
  bool is_data() const { return s() && !(type() & 8); }
  bool readable() const { return !is_code() || (type() & 2); }   // data always readable
  bool writable() const { return is_data() && (type() & 2); }
  bool conforming() const { return is_code() && (type() & 4); }

  // Gates.
  uint16_t gate_selector() const { return uint16_t(raw >> 16); }
  uint32_t gate_offset() const { return uint32_t((raw & 0xffff) | ((raw >> 32) & 0xffff0000u)); }
  uint8_t gate_params() const { return (raw >> 32) & 0x1f; }

  Segment to_segment(uint16_t sel) const {
    Segment s{};
    s.base = base();
    s.limit = limit();
    s.selector = sel;
    s.type = type();
    s.present = present();
    s.dpl = dpl();
    s.db = db();
    s.s = this->s();
    s.l = l();
    s.g = g();
    s.avl = avl();
    s.unusable = 0;
    return s;
  }
};

// Reads the descriptor `sel` names from the GDT or LDT. false when the
// selector's index is outside the table (or TI=1 with no usable LDT).
// `addr` receives the descriptor's linear address.
bool read_descriptor(Cpu& c, uint16_t sel, Descriptor& d, uint64_t* addr = nullptr);
// Sets the accessed bit in memory (and in `d`) if clear.
void set_descriptor_accessed(Cpu& c, uint64_t addr, Descriptor& d);
// Writes the type nibble (TSS busy bit changes).
void write_descriptor_type(Cpu& c, uint64_t addr, Descriptor& d, uint8_t type);

inline bool selector_null(uint16_t sel) { return (sel & 0xfffc) == 0; }
inline uint32_t sel_error(uint16_t sel) { return sel & 0xfffc; }

// The unusable segment a null selector loads in protected mode.
inline Segment null_segment(uint16_t sel) {
  Segment s{};
  s.selector = sel;
  s.unusable = 1;
  return s;
}

// The data/stack segment checks of MOV/POP Sreg and of far returns and task
// switches (SDM vol. 3, MOV instruction operation). `cpl` is the privilege the
// check is made against. Throws #GP/#SS/#NP with `vec_gp` replaced by #TS when
// called from a task switch.
Segment check_data_segment(Cpu& c, uint8_t seg_index, uint16_t sel, uint8_t cpl, Vec vec_gp);

}  // namespace anykvm::soft
