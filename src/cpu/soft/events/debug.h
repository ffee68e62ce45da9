// Debug-register breakpoints and single-step (SDM vol. 3, ch. 17), owned by
// the system area. The engine loop calls these hooks only while debug_active().
#pragma once
namespace anykvm::soft {
class Cpu;
// DR7 enables any breakpoint, or EFLAGS.TF is set: run one instruction at a time with the hooks.
bool debug_active(const Cpu& cpu);
// Before an instruction executes: instruction breakpoints (#DB fault, honouring RF). Throws Fault.
void debug_before_insn(Cpu& cpu);
// After an instruction retired: data breakpoints hit during it and single-step (#DB trap).
// `tf_before` is EFLAGS.TF as it was when the instruction started.
void debug_after_insn(Cpu& cpu, bool tf_before);
}  // namespace anykvm::soft
