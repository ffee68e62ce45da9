/* A KVM client of the in-kernel irqchip, with only <linux/kvm.h> and
 * open/ioctl/mmap: KVM_CREATE_IRQCHIP and KVM_CREATE_PIT2, then two real-mode
 * guests that program the devices from guest code and sleep in HLT:
 *   1. the master PIC (ICW1-4, OCW1) at vector 0x20 and PIT channel 0 in
 *      mode 2 every ~10 ms; the ISR counts, EOIs the PIC and OUTs the count
 *      to port 0x10;
 *   2. the LAPIC, moved to 0x10000 by WRMSR IA32_APIC_BASE so real mode
 *      reaches it, software-enabled, its timer periodic at vector 0x30; the
 *      ISR counts, writes the EOI register and OUTs the count to port 0x11.
 * Every tick wakes the vCPU out of HLT inside KVM_RUN (an in-kernel irqchip
 * never returns KVM_EXIT_HLT); the client sees only the ISR's OUTs, 1, 2, 3.
 * Exit status 0 when every exit is as expected. */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

static const uint8_t k_pit_guest[] = {
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x70, 0xc7, 0x06, 0x80, 0x00, 0x3a, 0x10, 0xc7, 0x06,
    0x82, 0x00, 0x00, 0x00, 0xb0, 0x11, 0xe6, 0x20, 0xb0, 0x20, 0xe6, 0x21, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01,
    0xe6, 0x21, 0xb0, 0xfe, 0xe6, 0x21, 0xb0, 0x34, 0xe6, 0x43, 0xb0, 0x9c, 0xe6, 0x40, 0xb0, 0x2e, 0xe6, 0x40,
    0xfb, 0xf4, 0xeb, 0xfc, 0xff, 0x06, 0x00, 0x60, 0xb0, 0x20, 0xe6, 0x20, 0xa1, 0x00, 0x60, 0xe7, 0x10, 0xcf};

static const uint8_t k_lapic_guest[] = {
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x70, 0xc7, 0x06, 0xc0, 0x00, 0x58, 0x10, 0xc7, 0x06,
    0xc2, 0x00, 0x00, 0x00, 0x66, 0xb9, 0x1b, 0x00, 0x00, 0x00, 0x66, 0xb8, 0x00, 0x09, 0x01, 0x00, 0x66, 0x31,
    0xd2, 0x0f, 0x30, 0xb8, 0x00, 0x10, 0x8e, 0xc0, 0x26, 0x66, 0xc7, 0x06, 0xf0, 0x00, 0xff, 0x01, 0x00, 0x00,
    0x26, 0x66, 0xc7, 0x06, 0xe0, 0x03, 0x0b, 0x00, 0x00, 0x00, 0x26, 0x66, 0xc7, 0x06, 0x20, 0x03, 0x30, 0x00,
    0x02, 0x00, 0x26, 0x66, 0xc7, 0x06, 0x80, 0x03, 0x80, 0x96, 0x98, 0x00, 0xfb, 0xf4, 0xeb, 0xfc, 0xff, 0x06,
    0x00, 0x60, 0x26, 0x66, 0xc7, 0x06, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa1, 0x00, 0x60, 0xe7, 0x11, 0xcf};

#define FAIL(...)                                  \
  do {                                             \
    fprintf(stderr, "irq_timer: FAIL: " __VA_ARGS__); \
    fputc('\n', stderr);                           \
    return 1;                                      \
  } while (0)

static int run_guest(int kvm, const char* name, const uint8_t* code, size_t len, uint16_t port) {
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) FAIL("%s: KVM_CREATE_VM: %s", name, strerror(errno));
  if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) != 0) FAIL("%s: KVM_CREATE_IRQCHIP: %s", name, strerror(errno));
  struct kvm_pit_config pit;
  memset(&pit, 0, sizeof(pit));
  if (ioctl(vm, KVM_CREATE_PIT2, &pit) != 0) FAIL("%s: KVM_CREATE_PIT2: %s", name, strerror(errno));
  uint8_t* ram = mmap(NULL, 0x8000, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ram == MAP_FAILED) FAIL("mmap");
  memcpy(ram + 0x1000, code, len);
  struct kvm_userspace_memory_region region = {0, 0, 0, 0x8000, (uint64_t)(uintptr_t)ram};
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) != 0) FAIL("%s: memory: %s", name, strerror(errno));
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) FAIL("%s: KVM_CREATE_VCPU: %s", name, strerror(errno));
  int size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  struct kvm_run* run = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) FAIL("mmap run");
  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) != 0) FAIL("KVM_GET_SREGS");
  sregs.cs.base = 0;
  sregs.cs.selector = 0;
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) != 0) FAIL("KVM_SET_SREGS");
  struct kvm_regs regs;
  memset(&regs, 0, sizeof(regs));
  regs.rip = 0x1000;
  regs.rflags = 2;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) != 0) FAIL("KVM_SET_REGS");
  for (uint16_t want = 1; want <= 3; ++want) {
    int r;
    do {
      r = ioctl(vcpu, KVM_RUN, 0);
    } while (r < 0 && errno == EINTR);
    if (r != 0) FAIL("%s: KVM_RUN: %s", name, strerror(errno));
    if (run->exit_reason != KVM_EXIT_IO || run->io.direction != KVM_EXIT_IO_OUT || run->io.port != port)
      FAIL("%s: tick %u: exit %u (port 0x%x), want OUT to 0x%x", name, want, run->exit_reason, run->io.port, port);
    uint16_t value;
    memcpy(&value, (uint8_t*)run + run->io.data_offset, sizeof(value));
    if (value != want) FAIL("%s: tick %u: the ISR reported %u", name, want, value);
  }
  if (ioctl(vcpu, KVM_GET_REGS, &regs) != 0) FAIL("KVM_GET_REGS");
  if (regs.rip < 0x1000 || regs.rip >= 0x1000 + len) FAIL("%s: rip 0x%llx outside the code", name, regs.rip);
  printf("irq_timer: %s: 3 timer interrupts woke HLT\n", name);
  munmap(run, (size_t)size);
  munmap(ram, 0x8000);
  close(vcpu);
  close(vm);
  return 0;
}

int main(void) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) FAIL("open /dev/kvm: %s", strerror(errno));
  if (ioctl(kvm, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP) <= 0) FAIL("KVM_CAP_IRQCHIP not reported");
  if (run_guest(kvm, "PIT through the PIC", k_pit_guest, sizeof(k_pit_guest), 0x10)) return 1;
  if (run_guest(kvm, "LAPIC timer", k_lapic_guest, sizeof(k_lapic_guest), 0x11)) return 1;
  return 0;
}
