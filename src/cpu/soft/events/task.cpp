// Hardware task switching (SDM vol. 3, 7.3): 16- and 32-bit TSSs, busy bits,
// NT and the previous-task link for CALL/INT nesting and IRET return, CR0.TS,
// CR3 and LDT loads, a switch into a virtual-8086 task, and the error code
// pushed on the new task's stack for exceptions through a task gate. Faults
// before the commit point leave the old task untouched; faults while loading
// the new segments are raised in the new task's context (7.3, step 12).
// Leaves out: I/O map base checks at switch time.
#include "cpu/soft/events/events.h"

namespace anykvm::soft {
namespace {

// 32-bit TSS layout (SDM vol. 3, figure 7-2).
namespace tss32 {
constexpr uint32_t LINK = 0x00, CR3 = 0x1c, EIP = 0x20, EFLAGS = 0x24, GPR = 0x28, SEG = 0x48, LDT = 0x60;
constexpr uint32_t T_FLAG = 0x64;  // bit 0: debug trap on switch
constexpr uint32_t MIN_LIMIT = 0x67;
}  // namespace tss32
// 16-bit TSS layout (figure 7-11).
namespace tss16 {
constexpr uint32_t LINK = 0x00, IP = 0x0e, FLAGS = 0x10, GPR = 0x12, SEG = 0x22, LDT = 0x2a;
constexpr uint32_t MIN_LIMIT = 0x2b;
}  // namespace tss16

constexpr uint64_t k_dr6_bt = 1u << 15;
constexpr uint32_t k_eflags_reserved = 0xffc08028u;  // bits 3, 5, 15, 31:22 (SDM vol. 1, 3.4.3)

bool tss_is32(uint8_t type) { return type & 8; }

struct TaskState {
  uint32_t cr3 = 0, eip = 0, eflags = 0;
  uint32_t gpr[8] = {};
  uint16_t sel[6] = {};
  uint16_t ldt = 0;
  bool trap = false;
};

uint32_t rd32(Cpu& c, uint64_t a) { return c.read_linear<uint32_t>(uint32_t(a), false); }
uint16_t rd16(Cpu& c, uint64_t a) { return c.read_linear<uint16_t>(uint32_t(a), false); }
void wr32(Cpu& c, uint64_t a, uint32_t v) { c.write_linear<uint32_t>(uint32_t(a), v, false); }
void wr16(Cpu& c, uint64_t a, uint16_t v) { c.write_linear<uint16_t>(uint32_t(a), v, false); }

TaskState read_tss(Cpu& c, uint64_t b, bool is32) {
  TaskState n;
  if (is32) {
    n.cr3 = rd32(c, b + tss32::CR3);
    n.eip = rd32(c, b + tss32::EIP);
    n.eflags = rd32(c, b + tss32::EFLAGS);
    for (int i = 0; i < 8; ++i) n.gpr[i] = rd32(c, b + tss32::GPR + 4 * i);
    for (int i = 0; i < 6; ++i) n.sel[i] = rd16(c, b + tss32::SEG + 4 * i);
    n.ldt = rd16(c, b + tss32::LDT);
    n.trap = rd16(c, b + tss32::T_FLAG) & 1;
  } else {
    n.eip = rd16(c, b + tss16::IP);
    n.eflags = rd16(c, b + tss16::FLAGS);
    for (int i = 0; i < 8; ++i) n.gpr[i] = rd16(c, b + tss16::GPR + 2 * i);
    for (int i = 0; i < 4; ++i) n.sel[i] = rd16(c, b + tss16::SEG + 2 * i);  // ES CS SS DS
    n.ldt = rd16(c, b + tss16::LDT);
  }
  return n;
}

void save_tss(Cpu& c, uint64_t b, bool is32, uint32_t eip, uint32_t eflags) {
  if (is32) {
    wr32(c, b + tss32::EIP, eip);
    wr32(c, b + tss32::EFLAGS, eflags);
    for (int i = 0; i < 8; ++i) wr32(c, b + tss32::GPR + 4 * i, uint32_t(c.gpr[i]));
    for (int i = 0; i < 6; ++i) wr16(c, b + tss32::SEG + 4 * i, c.seg[i].selector);
  } else {
    wr16(c, b + tss16::IP, uint16_t(eip));
    wr16(c, b + tss16::FLAGS, uint16_t(eflags));
    for (int i = 0; i < 8; ++i) wr16(c, b + tss16::GPR + 2 * i, uint16_t(c.gpr[i]));
    for (int i = 0; i < 4; ++i) wr16(c, b + tss16::SEG + 2 * i, c.seg[i].selector);
  }
}

void load_ldt(Cpu& c, uint16_t sel) {
  if (selector_null(sel)) {
    c.ldtr = null_segment(sel);
    return;
  }
  Descriptor d;
  if ((sel & 4) || !read_descriptor(c, sel, d) || d.s() || d.sys_type() != SysType::Ldt)
    throw fault(Vec::TS, sel_error(sel));
  if (!d.present()) throw fault(Vec::TS, sel_error(sel));
  c.ldtr = d.to_segment(sel);
}

void load_task_cs(Cpu& c, uint16_t sel) {
  if (selector_null(sel)) throw fault(Vec::TS, 0);
  Descriptor d;
  uint64_t addr;
  if (!read_descriptor(c, sel, d, &addr) || !d.is_code()) throw fault(Vec::TS, sel_error(sel));
  uint8_t rpl = sel & 3;
  if (d.conforming() ? d.dpl() > rpl : d.dpl() != rpl) throw fault(Vec::TS, sel_error(sel));
  if (!d.present()) throw fault(Vec::NP, sel_error(sel));
  set_descriptor_accessed(c, addr, d);
  c.seg[sreg::CS] = d.to_segment(sel);
  c.cpl = rpl;
}

}  // namespace

void task_switch(Cpu& c, uint16_t sel, Descriptor d, uint64_t daddr, TaskSwitchReason why, uint64_t next_eip,
                 bool has_ec, uint32_t ec) {
  const uint32_t sec = sel_error(sel);
  const bool new32 = tss_is32(d.type());
  const bool busy = d.type() & k_tss_busy_bit;
  if (why == TaskSwitchReason::Iret ? !busy : busy) throw fault(why == TaskSwitchReason::Iret ? Vec::TS : Vec::GP, sec);
  if (!d.present()) throw fault(Vec::NP, sec);
  if (d.limit() < (new32 ? tss32::MIN_LIMIT : tss16::MIN_LIMIT)) throw fault(Vec::TS, sec);

  // Everything the switch reads comes first: faults here belong to the old task.
  TaskState n = read_tss(c, d.base(), new32);
  const bool old32 = tss_is32(c.tr.type);
  const uint64_t old_base = c.tr.base;
  uint32_t old_flags = c.eflags();
  if (why == TaskSwitchReason::Iret) old_flags &= ~fl::NT;
  save_tss(c, old_base, old32, uint32_t(next_eip), old_flags);

  if (why == TaskSwitchReason::Jmp || why == TaskSwitchReason::Iret) {
    Descriptor od;
    uint64_t oaddr;
    if (read_descriptor(c, c.tr.selector, od, &oaddr))
      write_descriptor_type(c, oaddr, od, od.type() & ~k_tss_busy_bit);
  }
  if (why == TaskSwitchReason::Call || why == TaskSwitchReason::Int) {
    wr16(c, d.base() + (new32 ? tss32::LINK : tss16::LINK), c.tr.selector);
    n.eflags |= fl::NT;
  }
  if (why != TaskSwitchReason::Iret) write_descriptor_type(c, daddr, d, d.type() | k_tss_busy_bit);

  // Commit point (7.3 step 10): the new task's state.
  c.tr = d.to_segment(sel);
  c.cr0 |= cr0::TS;
  if (new32 && c.paging() && n.cr3 != c.cr3) {
    c.cr3 = n.cr3;
    c.tlb_flush_nonglobal();
  }
  uint32_t nf = new32 ? n.eflags : ((c.eflags() & 0xffff0000u) | n.eflags);
  c.set_eflags((nf & ~k_eflags_reserved) | fl::FIXED1);
  c.rip = n.eip;
  for (int i = 0; i < 8; ++i) {
    if (new32) c.gpr[i] = n.gpr[i];
    else c.gpr[i] = (c.gpr[i] & ~0xffffull) | n.gpr[i];
  }
  for (int i = 0; i < 6; ++i) {
    c.seg[i].selector = n.sel[i];
  }
  c.ldtr.selector = n.ldt;

  // Descriptor loads in the new task's context.
  load_ldt(c, n.ldt);
  if (c.v86()) {
    c.cpl = 3;
    for (uint8_t s = 0; s < 6; ++s) c.load_segment_real(s, n.sel[s]);
  } else {
    load_task_cs(c, n.sel[sreg::CS]);
    c.seg[sreg::SS] = check_data_segment(c, sreg::SS, n.sel[sreg::SS], c.cpl, Vec::TS);
    for (uint8_t s : {sreg::ES, sreg::DS, sreg::FS, sreg::GS})
      c.seg[s] = check_data_segment(c, s, n.sel[s], c.cpl, Vec::TS);
  }
  if (has_ec) {
    StackAccess st = current_stack(c);
    st.push(ec, new32 ? 4 : 2);
    st.commit_sp();
  }
  if (c.rip > c.seg[sreg::CS].limit) throw fault(Vec::GP, 0);
  if (n.trap) {
    // T flag: #DB with DR6.BT before the new task's first instruction (17.2.3).
    c.dr6 |= k_dr6_bt;
    c.deliver_exception(fault(Vec::DB));
  }
}

}  // namespace anykvm::soft
