// MMX/SSE data movement against the host: loads and stores of every width
// (the [edi] buffer is compared too), partial moves, MOVD/MOVQ between
// register files, masks, shuffles, unpacks, bitwise float ops and the masked
// stores.
#include "simd_harness.h"

namespace anykvm::simdtest {
namespace {

Form f(std::vector<uint8_t> op, Modrm m = Modrm::Both, Imm imm = Imm::None) {
  return Form{std::move(op), Lane::I32, imm, m};
}

TEST(SimdMove, LoadsAndStores) {
  std::vector<Form> v;
  for (uint8_t op : {0x10, 0x11})
    for (uint8_t p : {0x00, 0x66, 0xf3, 0xf2}) v.push_back(p ? f({p, 0x0f, op}) : f({0x0f, op}));
  for (uint8_t op : {0x28, 0x29}) {
    v.push_back(f({0x0f, op}));
    v.push_back(f({0x66, 0x0f, op}));
  }
  v.push_back(f({0x66, 0x0f, 0x6f}));
  v.push_back(f({0xf3, 0x0f, 0x6f}));
  v.push_back(f({0x66, 0x0f, 0x7f}));
  v.push_back(f({0xf3, 0x0f, 0x7f}));
  v.push_back(f({0xf2, 0x0f, 0xf0}, Modrm::MemOnly));  // lddqu
  v.push_back(f({0x0f, 0x2b}, Modrm::MemOnly));
  v.push_back(f({0x66, 0x0f, 0x2b}, Modrm::MemOnly));
  v.push_back(f({0x66, 0x0f, 0xe7}, Modrm::MemOnly));
  v.push_back(f({0x0f, 0xc3}, Modrm::MemOnly));  // movnti [edi], eax
  run_forms("ldst", v, false, false, 60);
}

TEST(SimdMove, PartialMoves) {
  run_forms("partial",
            {f({0x0f, 0x12}), f({0x66, 0x0f, 0x12}, Modrm::MemOnly), f({0xf3, 0x0f, 0x12}), f({0xf2, 0x0f, 0x12}),
             f({0x0f, 0x13}, Modrm::MemOnly), f({0x66, 0x0f, 0x13}, Modrm::MemOnly), f({0x0f, 0x16}),
             f({0x66, 0x0f, 0x16}, Modrm::MemOnly), f({0xf3, 0x0f, 0x16}), f({0x0f, 0x17}, Modrm::MemOnly),
             f({0x66, 0x0f, 0x17}, Modrm::MemOnly)},
            false, false, 60);
}

TEST(SimdMove, MovdMovq) {
  run_forms("movdq",
            {f({0x0f, 0x6e}), f({0x66, 0x0f, 0x6e}), f({0x0f, 0x7e}), f({0x66, 0x0f, 0x7e}), f({0xf3, 0x0f, 0x7e}),
             f({0x0f, 0x6f}), f({0x0f, 0x7f}), f({0x66, 0x0f, 0xd6}), f({0xf3, 0x0f, 0xd6}, Modrm::RegOnly),
             f({0xf2, 0x0f, 0xd6}, Modrm::RegOnly), f({0x0f, 0xe7}, Modrm::MemOnly)},
            true, false, 60);
}

TEST(SimdMove, MasksShufflesLogic) {
  run_forms("misc",
            {f({0x0f, 0x50}, Modrm::RegOnly), f({0x66, 0x0f, 0x50}, Modrm::RegOnly), f({0x0f, 0x14}),
             f({0x0f, 0x15}), f({0x66, 0x0f, 0x14}), f({0x66, 0x0f, 0x15}), f({0x0f, 0xc6}, Modrm::Both, Imm::Byte),
             f({0x66, 0x0f, 0xc6}, Modrm::Both, Imm::Byte), f({0x0f, 0x54}), f({0x66, 0x0f, 0x55}), f({0x0f, 0x56}),
             f({0x66, 0x0f, 0x57})},
            false, false, 100);
}

TEST(SimdMove, MaskedStores) {
  run_forms("maskmov", {f({0x0f, 0xf7}, Modrm::RegOnly), f({0x66, 0x0f, 0xf7}, Modrm::RegOnly)}, true, false, 200);
}

}  // namespace
}  // namespace anykvm::simdtest
