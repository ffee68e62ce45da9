// System-architecture instructions (owned by the system area: exec/system*.cpp,
// mmu/, events/). Registration entry point for the dispatch table, and the
// contract between the system area and the engine loop (soft_vcpu.*).
//
// Engine-loop contract (what the loop must call; declarations in mmu/mmu.h,
// events/debug.h, cpuid_msr.h):
//  - KVM_RUN entry and every block boundary: mmu_sync(cpu) (memory-map
//    generation -> TLB flush).
//  - Handlers commit RIP themselves (advance past the instruction or jump).
//  - Per instruction: on a normal retire call mmio_retire(cpu); on
//    `catch (Fault& f)` call cpu.deliver_exception(f) (RIP still at the
//    instruction); on `catch (StopInsn&)` leave RIP and return cpu.exit.
//    cpu.exit_pending set by a handler (posted MMIO write, HLT, shutdown) ends
//    the run after the instruction.
//  - Re-entry after an MMIO exit: complete_mmio_read -> mmio_complete_read(cpu,
//    data); then mmio_reenter(cpu) and re-execute the stopped instruction before
//    anything else (no interrupt delivery, no stop-flag check in between).
//  - External interrupt (IF=1, interrupt_shadow==0): cpu.deliver_interrupt(v,
//    false, cpu.rip); NMI (!nmi_masked, no MOV-SS shadow): cpu.deliver_nmi().
//    An exception injected by KVM_SET_VCPU_EVENTS that is a #PF: set
//    cpu.tlb.pf_addr = cpu.cr2 first (CR2 is written at delivery).
//  - While debug_active(cpu): debug_before_insn before each instruction (may
//    throw Fault #DB), debug_after_insn(cpu, tf_before) after it retired and
//    after interrupt_shadow was set for MOV/POP SS.
//  - State loads (set_sregs, set_debugregs, EFER via set_msr, reset):
//    mmu_state_loaded(cpu). cpu.cpl must be kept equal to CS.RPL in protected
//    mode (SS.DPL as KVM derives it), 0 in real mode, 3 in v86 mode.
//  - When a guest page becomes a code page (is_code_page turns true):
//    cpu.tlb.revoke_write_pfn(pfn) on every vCPU (or bump the memory-map
//    generation), so writes to it take the slow path and call on_code_write.
//  - Block cache keys: mmu_code_gpa(cpu, lin); instruction bytes: fetch_code.
//  - KVM_GET/SET_MSRS: msr_read/msr_write(cpu, index, value, host=true);
//    KVM_GET_TSC_KHZ: k_tsc_khz.
#pragma once
#include "x86/decode/insn.h"

namespace anykvm::soft {
class Cpu;
void register_system_handlers(x86::DispatchTable& t);
// I/O permission check for IN/OUT/INS/OUTS (IOPL, v86, TSS I/O bitmap): throws #GP.
void check_io(Cpu& cpu, uint16_t port, unsigned size);
}  // namespace anykvm::soft
