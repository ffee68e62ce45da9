// Differential tests of the ModRM operand forms the engine binds specialized
// handlers for (cpu/soft/dispatch.cpp, exec/common.h Rm): every instruction
// below runs with a register operand and with memory through [base+disp8],
// [base+disp32], [base+index*scale+disp8], [base+index*scale] (no disp),
// [index+disp32] (SIB without base: the generic path) and [disp32], at each
// operand size it has. The other families mostly use [disp32] memory, so
// these cases are what checks the base / base+index handler variants.
#include "asm.h"

namespace anykvm::difftest {
namespace {

constexpr uint32_t FORMS_WINDOW = 640;
constexpr uint32_t FORMS_BASE_AT = 256;
constexpr unsigned MOD_MEM = 0, MOD_DISP8 = 1, MOD_DISP32 = 2;
constexpr unsigned RM_SIB = 4, RM_DISP32 = 5, SIB_NO_BASE = 5;

enum class Form : uint8_t { Reg, BaseDisp8, BaseDisp32, BaseIndexDisp8, BaseIndex, IndexDisp32, Disp32 };
constexpr Form k_forms[] = {Form::Reg,       Form::BaseDisp8,   Form::BaseDisp32, Form::BaseIndexDisp8,
                            Form::BaseIndex, Form::IndexDisp32, Form::Disp32};

enum class Imm : uint8_t { None, Byte, Full /* operand size, at most 32 bits */ };

// One instruction row: opcode bytes for 8-bit and for 16/32-bit operands (0:
// no such size), the ModRM reg field (-1: a register operand chosen per case).
struct Row {
  const char* name;
  std::vector<uint8_t> op8, opv;
  int digit;
  Imm imm;
  uint32_t defined;     // status flags compared
  bool mem_only = false;  // LEA
};

constexpr uint32_t k_logic = fl::STATUS & ~fl::AF;
constexpr uint32_t k_imul = fl::CF | fl::OF;

std::vector<Row> rows() {
  std::vector<Row> v;
  for (uint8_t op = 0; op < 8; ++op) {
    uint32_t f = (op == 1 || op == 4 || op == 6) ? k_logic : fl::STATUS;
    uint8_t b = uint8_t(op * 8);
    v.push_back({"alu E,G", {b}, {uint8_t(b + 1)}, -1, Imm::None, f});
    v.push_back({"alu G,E", {uint8_t(b + 2)}, {uint8_t(b + 3)}, -1, Imm::None, f});
    v.push_back({"alu E,I", {0x80}, {0x81}, op, Imm::Full, f});
    v.push_back({"alu E,Ib", {}, {0x83}, op, Imm::Byte, f});
  }
  v.push_back({"test E,G", {0x84}, {0x85}, -1, Imm::None, k_logic});
  v.push_back({"test E,I", {0xf6}, {0xf7}, 0, Imm::Full, k_logic});
  v.push_back({"inc", {0xfe}, {0xff}, 0, Imm::None, fl::STATUS});
  v.push_back({"dec", {0xfe}, {0xff}, 1, Imm::None, fl::STATUS});
  v.push_back({"mov E,G", {0x88}, {0x89}, -1, Imm::None, fl::STATUS});
  v.push_back({"mov G,E", {0x8a}, {0x8b}, -1, Imm::None, fl::STATUS});
  v.push_back({"mov E,I", {0xc6}, {0xc7}, 0, Imm::Full, fl::STATUS});
  v.push_back({"movzx Gv,Eb", {}, {TWO_BYTE, 0xb6}, -1, Imm::None, fl::STATUS});
  v.push_back({"movzx Gv,Ew", {}, {TWO_BYTE, 0xb7}, -1, Imm::None, fl::STATUS});
  v.push_back({"movsx Gv,Eb", {}, {TWO_BYTE, 0xbe}, -1, Imm::None, fl::STATUS});
  v.push_back({"movsx Gv,Ew", {}, {TWO_BYTE, 0xbf}, -1, Imm::None, fl::STATUS});
  v.push_back({"imul G,E", {}, {TWO_BYTE, 0xaf}, -1, Imm::None, k_imul});
  v.push_back({"shl E,1", {0xd0}, {0xd1}, 4, Imm::None, k_logic});
  v.push_back({"shr E,1", {0xd0}, {0xd1}, 5, Imm::None, k_logic});
  v.push_back({"sar E,1", {0xd0}, {0xd1}, 7, Imm::None, k_logic});
  v.push_back({"cmovne G,E", {}, {TWO_BYTE, 0x45}, -1, Imm::None, fl::STATUS});
  v.push_back({"cmovl G,E", {}, {TWO_BYTE, 0x4c}, -1, Imm::None, fl::STATUS});
  v.push_back({"lea", {}, {0x8d}, -1, Imm::None, fl::STATUS, true});
  return v;
}

unsigned pick_not(Rng& rng, std::initializer_list<int> avoid) {
  for (;;) {
    unsigned r = rng.below(8);
    if (r == ESP) continue;
    bool ok = true;
    for (int a : avoid) ok = ok && int(r) != a;
    if (ok) return r;
  }
}

Case form_case(Rng& rng, const Row& row, unsigned bits, Form f) {
  Case c = random_case(rng);
  Asm x;
  x.osize(bits);
  for (uint8_t b : bits == 8 ? row.op8 : row.opv) x.b.push_back(b);
  int base = -1, index = -1;
  if (f == Form::BaseDisp8 || f == Form::BaseDisp32 || f == Form::BaseIndexDisp8 || f == Form::BaseIndex)
    base = int(pick_not(rng, {}));
  if (f == Form::BaseIndexDisp8 || f == Form::BaseIndex || f == Form::IndexDisp32) index = int(pick_not(rng, {base}));
  unsigned reg = row.digit >= 0 ? unsigned(row.digit) : rng.below(8);
  if (bits != 8 && row.digit < 0 && reg == ESP) reg = EAX;
  unsigned scale = f == Form::IndexDisp32 ? 0 : rng.below(4);
  switch (f) {
    case Form::Reg: x.rr(reg, pick_not(rng, {})); break;
    case Form::BaseDisp8:
      if (base == ESP) base = EAX;
      x.i8(uint8_t(MOD_DISP8 << 6 | reg << 3 | unsigned(base))).i8(uint32_t(int32_t(rng.below(256)) - 128));
      break;
    case Form::BaseDisp32:
      x.i8(uint8_t(MOD_DISP32 << 6 | reg << 3 | unsigned(base))).d32(uint32_t(int32_t(rng.below(200)) - 100));
      break;
    case Form::BaseIndexDisp8:
      x.i8(uint8_t(MOD_DISP8 << 6 | reg << 3 | RM_SIB)).i8(uint8_t(scale << 6 | unsigned(index) << 3 | unsigned(base)));
      x.i8(uint32_t(int32_t(rng.below(256)) - 128));
      break;
    case Form::BaseIndex:
      if (base == EBP) base = EBX == index ? ESI : EBX;  // mod=00 base=101 means "no base"
      x.i8(uint8_t(MOD_MEM << 6 | reg << 3 | RM_SIB)).i8(uint8_t(scale << 6 | unsigned(index) << 3 | unsigned(base)));
      break;
    case Form::IndexDisp32:
      x.i8(uint8_t(MOD_MEM << 6 | reg << 3 | RM_SIB)).i8(uint8_t(unsigned(index) << 3 | SIB_NO_BASE));
      x.d32(uint32_t(int32_t(rng.below(200)) - 100));
      break;
    case Form::Disp32:
      x.i8(uint8_t(MOD_MEM << 6 | reg << 3 | RM_DISP32));
      x.relocs.push_back(uint8_t(x.b.size()));
      x.d32(FORMS_BASE_AT + rng.below(64));
      break;
  }
  if (row.imm == Imm::Byte) x.i8(rng.u32());
  if (row.imm == Imm::Full) x.imm(bits, rng.u32());
  x.into(c);
  // A memory operand lands in the window: the base (or the unscaled index of
  // the SIB-without-base form) points into it, the index is small.
  if (base >= 0) {
    c.gpr[unsigned(base)] = FORMS_BASE_AT + rng.below(16);
    c.gpr_rel = uint8_t(1u << base);
  }
  if (index >= 0) {
    if (f == Form::IndexDisp32) {
      c.gpr[unsigned(index)] = FORMS_BASE_AT + rng.below(16);
      c.gpr_rel = uint8_t(1u << index);
    } else {
      c.gpr[unsigned(index)] = rng.below(8);
    }
  }
  c.mem.resize(FORMS_WINDOW);
  for (auto& b : c.mem) b = uint8_t(rng.u32());
  c.defined_flags = row.defined;
  return c;
}

void gen_forms(std::vector<Case>& out, Rng& rng) {
  for (const Row& row : rows()) {
    for (unsigned bits : {8u, 16u, 32u}) {
      if ((bits == 8 ? row.op8 : row.opv).empty()) continue;
      for (Form f : k_forms) {
        if (row.mem_only && f == Form::Reg) continue;
        for (int k = 0; k < 12; ++k) out.push_back(form_case(rng, row, bits, f));
      }
    }
  }
}
CPU_DIFF_FAMILY(OperandForms, AllForms, FORMS_WINDOW, gen_forms)

}  // namespace
}  // namespace anykvm::difftest
