// String instructions MOVS, CMPS, SCAS, LODS, STOS with REP/REPE/REPNE (SDM
// vol. 2, REP prefix; vol. 1, 7.3.9). Source DS:(E)SI (segment override
// allowed), destination ES:(E)DI; index and count registers by address size.
// RSI/RDI/RCX are committed after every element, so a fault, an MMIO exit or
// a stop request between elements resumes correctly; a long REP yields back
// to the engine loop (RIP unchanged) every k_rep_chunk elements so stop flags
// and interrupts are seen, and after every element when single-stepping.
// INS/OUTS live in io.cpp.
#include "cpu/soft/exec/common.h"

namespace anykvm::soft::ex {
namespace {

constexpr uint32_t k_rep_chunk = 4096;

enum class Str : uint8_t { Movs, Cmps, Scas, Lods, Stos };

template <Str K, typename T>
inline void one(Cpu& c, const Insn& i, uint64_t m, int64_t d) {
  const unsigned as = i.addrsize;
  if constexpr (K == Str::Movs) {
    uint64_t si = c.gpr[k_rsi] & m, di = c.gpr[k_rdi] & m;
    T v = c.read<T>(i.seg, si);
    c.write<T>(k_es, di, v);
    set_index(c, k_rsi, as, si + d);
    set_index(c, k_rdi, as, di + d);
  } else if constexpr (K == Str::Cmps) {
    uint64_t si = c.gpr[k_rsi] & m, di = c.gpr[k_rdi] & m;
    T a = c.read<T>(i.seg, si);
    T b = c.read<T>(k_es, di);
    set_lazy<T>(c, FlagOp::Sub, a, b, T(a - b));
    set_index(c, k_rsi, as, si + d);
    set_index(c, k_rdi, as, di + d);
  } else if constexpr (K == Str::Scas) {
    uint64_t di = c.gpr[k_rdi] & m;
    T b = c.read<T>(k_es, di);
    T a = c.reg<T>(k_rax);
    set_lazy<T>(c, FlagOp::Sub, a, b, T(a - b));
    set_index(c, k_rdi, as, di + d);
  } else if constexpr (K == Str::Lods) {
    uint64_t si = c.gpr[k_rsi] & m;
    T v = c.read<T>(i.seg, si);
    c.set_reg<T>(k_rax, v);
    set_index(c, k_rsi, as, si + d);
  } else {
    uint64_t di = c.gpr[k_rdi] & m;
    c.write<T>(k_es, di, c.reg<T>(k_rax));
    set_index(c, k_rdi, as, di + d);
  }
}

template <Str K, typename T>
void h_str(Cpu& c, const Insn& i) {
  const uint64_t m = addr_mask(i.addrsize);
  const int64_t d = (c.eflags_rest & fl::DF) ? -int64_t(sizeof(T)) : int64_t(sizeof(T));
  if (i.rep == x86::RepPrefix::None) {
    one<K, T>(c, i, m, d);
    advance(c, i);
    return;
  }
  uint64_t n = get_count(c, i.addrsize);
  // With TF set a repeated string instruction traps after every iteration,
  // EIP still on it (SDM vol. 3, 17.3.1.4): one element per execution.
  const uint32_t chunk = (c.eflags_rest & fl::TF) ? 1 : k_rep_chunk;
  for (uint32_t it = 0; n != 0; ++it) {
    if (it == chunk) return;  // resume later at the same instruction
    one<K, T>(c, i, m, d);
    set_count(c, i.addrsize, --n);
    bool done = n == 0;
    if constexpr (K == Str::Cmps || K == Str::Scas) {
      bool zf = lazy_zf(c.lf);
      if (i.rep == x86::RepPrefix::Rep ? !zf : zf) done = true;
    }
    if (c.mmio_log.count) [[unlikely]] {
      // This element exchanged data with user space: it is complete, like a
      // retired instruction. A posted write must reach user space first.
      if (c.exit_pending) {
        if (done) advance(c, i);
        return;
      }
      c.mmio_log.reset();
    }
    if (done) break;
  }
  advance(c, i);
}

template <Str K>
void reg_str(DispatchTable& t, uint8_t op) {
  t.set(key1(op), ANYKVM_SIZED1(h_str, K));
  t.set(key1(op + 1), ANYKVM_SIZED1(h_str, K));
}

}  // namespace

void register_string(DispatchTable& t) {
  reg_str<Str::Movs>(t, 0xa4);
  reg_str<Str::Cmps>(t, 0xa6);
  reg_str<Str::Stos>(t, 0xaa);
  reg_str<Str::Lods>(t, 0xac);
  reg_str<Str::Scas>(t, 0xae);
}

}  // namespace anykvm::soft::ex
