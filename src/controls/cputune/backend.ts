// Where a guest's CPU tuning lives, one implementation per hypervisor driver.

/** libvirt's units: µs of CPU per vCPU in each period of µs; quota -1 is no limit. */
export interface CpuTune {
  quota: number | null;
  period: number | null;
}

export interface CpuTuneBackend {
  read(guestId: string): Promise<CpuTune>;
  write(guestId: string, tune: Partial<CpuTune>): Promise<void>;
}
