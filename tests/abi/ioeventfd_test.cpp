// KVM_IOEVENTFD through the real ABI (Linux 6.1 virt/kvm/eventfd.c
// kvm_ioeventfd, ioeventfd_check_collision, ioeventfd_in_range): errno of
// every rule, with and without an in-kernel irqchip (Linux serves it without
// one), and a guest whose PIO and MMIO writes of every length land in
// eventfds instead of exits. Proves KVM_CAP_IOEVENTFD.
#include <sys/eventfd.h>
#include <unistd.h>

#include "abi.h"

namespace abitest {
namespace {

class Ioeventfd : public Abi {
 protected:
  int efd() {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    m_efds.push_back(fd);
    return fd;
  }
  static uint64_t count(int fd) {
    uint64_t n = 0;
    return read(fd, &n, sizeof(n)) == sizeof(n) ? n : 0;
  }
  void TearDown() override {
    Abi::TearDown();
    for (int fd : m_efds) ::close(fd);
  }
  std::vector<int> m_efds;
};
ABI_SUITE(Ioeventfd);

kvm_ioeventfd args(uint64_t addr, uint32_t len, uint32_t flags, int fd, uint64_t datamatch = 0) {
  kvm_ioeventfd a{};
  a.addr = addr;
  a.len = len;
  a.flags = flags;
  a.fd = fd;
  a.datamatch = datamatch;
  return a;
}

constexpr uint32_t k_pio = KVM_IOEVENTFD_FLAG_PIO, k_dm = KVM_IOEVENTFD_FLAG_DATAMATCH,
                   k_deassign = KVM_IOEVENTFD_FLAG_DEASSIGN;

}  // namespace

TEST_P(Ioeventfd, RulesWithAndWithoutIrqchip) {
  for (bool irqchip : {false, true}) {
    SCOPED_TRACE(irqchip ? "with an in-kernel irqchip" : "without an irqchip");
    int vm = create_vm();
    if (irqchip) {
      ASSERT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
    }
    int a = efd(), b = efd();
    // Every natural length and 0 ("any length"), PIO and MMIO.
    for (uint32_t len : {0u, 1u, 2u, 4u, 8u}) {
      auto p = args(0x500 + len, len, k_pio, a);
      EXPECT_EQ(io(vm, KVM_IOEVENTFD, &p), 0) << len;
      auto m = args(0xd0000000ull + len * 16, len, 0, a);
      EXPECT_EQ(io(vm, KVM_IOEVENTFD, &m), 0) << len;
    }
    for (uint32_t len : {3u, 5u, 16u}) {
      auto p = args(0x600, len, k_pio, a);
      EXPECT_EQ(io(vm, KVM_IOEVENTFD, &p), -EINVAL) << len;
    }
    auto wrap = args(~0ull - 1, 4, 0, a);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &wrap), -EINVAL);
    auto len0_dm = args(0x600, 0, k_pio | k_dm, a);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &len0_dm), -EINVAL);
    auto bad_flag = args(0x600, 4, 1u << 5, a);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &bad_flag), -EINVAL);
    auto closed = args(0x600, 4, k_pio, 1000);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &closed), -EBADF);
    auto not_eventfd = args(0x600, 4, k_pio, vm);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &not_eventfd), -EINVAL);
    // Collisions: any-length vs anything, equal datamatch, wildcard vs data.
    auto dm1 = args(0x700, 4, k_pio | k_dm, a, 1);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &dm1), 0);
    auto dm2 = args(0x700, 4, k_pio | k_dm, b, 2);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &dm2), 0);
    auto dm1_again = args(0x700, 4, k_pio | k_dm, b, 1);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &dm1_again), -EEXIST);
    auto wild = args(0x700, 4, k_pio, b);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &wild), -EEXIST);
    auto any_len = args(0x700, 0, k_pio, b);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &any_len), -EEXIST);
    auto other_len = args(0x700, 2, k_pio, b);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &other_len), 0);
    auto same_addr_mmio = args(0x700, 4, k_dm, a, 1);  // another bus
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &same_addr_mmio), 0);
    // The s390 CCW notify bus exists on x86 too (nothing writes to it).
    auto ccw = args(0x700, 4, KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY | k_dm, a, 1);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &ccw), 0);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &ccw), -EEXIST);
    // Deassign: fd checks first, then an exact match (same eventfd, length,
    // wildcard-ness and data) or ENOENT.
    auto d = args(0x700, 4, k_pio | k_dm | k_deassign, a, 2);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &d), -ENOENT);  // dm 2 belongs to b
    d.fd = b;
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &d), 0);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &d), -ENOENT);
    auto d_wild = args(0x700, 4, k_pio | k_deassign, a);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &d_wild), -ENOENT);  // registered with a datamatch
    auto d_closed = args(0x700, 4, k_pio | k_deassign, 1000);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &d_closed), -EBADF);
    auto d_len0 = args(0x500, 0, k_pio | k_deassign, a);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &d_len0), 0);
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, bad_ptr()), -EFAULT);
    close_fd(vm);
  }
}

TEST_P(Ioeventfd, GuestWritesSignalWithoutExits) {
  // out 0x99, al (7); out 0x9a, ax; mov dword [0x3000], 0xdeadbeef;
  // mov byte [0x3008], 1; mov word [0x3008], 2; movq mm0, [0x1100];
  // movq [0x3010], mm0; mov dword [0x3000], 1 (no match: an exit);
  // out 0x98, al (an exit); hlt.   MMIO: 0x3000 is outside every slot.
  const std::vector<uint8_t> code = {
      0x31, 0xc0, 0x8e, 0xd8, 0xb0, 0x07, 0xe6, 0x99, 0xb8, 0x34, 0x12, 0xe7, 0x9a, 0x66, 0xc7, 0x06, 0x00,
      0x30, 0xef, 0xbe, 0xad, 0xde, 0xc6, 0x06, 0x08, 0x30, 0x01, 0xc7, 0x06, 0x08, 0x30, 0x02, 0x00, 0x0f,
      0x6f, 0x06, 0x00, 0x11, 0x0f, 0x7f, 0x06, 0x10, 0x30, 0x66, 0xc7, 0x06, 0x00, 0x30, 0x01, 0x00, 0x00,
      0x00, 0xe6, 0x98, 0xf4};
  const uint64_t q = 0x1122334455667788ull;
  for (bool irqchip : {false, true}) {
    SCOPED_TRACE(irqchip ? "with an in-kernel irqchip" : "without an irqchip");
    GuestMem mem(0x1000);
    std::memcpy(mem.ptr, code.data(), code.size());
    std::memcpy(mem.ptr + 0x100, &q, sizeof(q));
    int vm = create_vm();
    if (irqchip) {
      ASSERT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
    }
    ASSERT_EQ(set_region(vm, 0, 0, 0x1000, 0x1000, mem.uaddr()), 0);
    int vcpu = create_vcpu(vm, 0);
    kvm_run* run = map_run(vcpu);
    start_real_mode_at_0x1000(vcpu);
    int pio1 = efd(), pio2 = efd(), mmio4 = efd(), any = efd(), mmio8 = efd();
    auto a1 = args(0x99, 1, k_pio | k_dm, pio1, 7);
    auto a2 = args(0x9a, 2, k_pio, pio2);
    auto a4 = args(0x3000, 4, k_dm, mmio4, 0xdeadbeef);
    auto a0 = args(0x3008, 0, 0, any);
    auto a8 = args(0x3010, 8, k_dm, mmio8, q);
    for (auto* a : {&a1, &a2, &a4, &a0, &a8}) ASSERT_EQ(io(vm, KVM_IOEVENTFD, a), 0);

    ASSERT_EQ(io(vcpu, KVM_RUN, 0ul), 0);
    ASSERT_EQ(run->exit_reason, uint32_t(KVM_EXIT_MMIO)) << "the first exit is the unmatched write";
    EXPECT_EQ(run->mmio.phys_addr, 0x3000u);
    EXPECT_EQ(run->mmio.len, 4u);
    EXPECT_EQ(run->mmio.is_write, 1);
    EXPECT_EQ(count(pio1), 1u);
    EXPECT_EQ(count(pio2), 1u);
    EXPECT_EQ(count(mmio4), 1u);
    EXPECT_EQ(count(any), 2u);  // a byte and a word write
    EXPECT_EQ(count(mmio8), 1u);
    ASSERT_EQ(io(vcpu, KVM_RUN, 0ul), 0);
    ASSERT_EQ(run->exit_reason, uint32_t(KVM_EXIT_IO));
    EXPECT_EQ(run->io.port, 0x98);
    // Deassigned: the same write exits to user space.
    a1.flags |= k_deassign;
    ASSERT_EQ(io(vm, KVM_IOEVENTFD, &a1), 0);
    start_real_mode_at_0x1000(vcpu);
    ASSERT_EQ(io(vcpu, KVM_RUN, 0ul), 0);
    ASSERT_EQ(run->exit_reason, uint32_t(KVM_EXIT_IO));
    EXPECT_EQ(run->io.port, 0x99);
    close_fd(vcpu);
    close_fd(vm);
  }
  EXPECT_EQ(sys(KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD), 1);
  int vm = create_vm();
  EXPECT_EQ(io(vm, KVM_CHECK_EXTENSION, KVM_CAP_IOEVENTFD), 1);
  prove("KVM_CAP_IOEVENTFD");
}

}  // namespace abitest
