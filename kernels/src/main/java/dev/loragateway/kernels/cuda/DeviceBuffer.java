package dev.loragateway.kernels.cuda;

import jcuda.driver.CUdeviceptr;

/**
 * A range of device memory handed out by a {@link DeviceMemoryPool}: {@code bytes} long (the size
 * asked for; the pool may reserve a little more to keep the next range aligned), starting
 * {@code offset} bytes into chunk {@code chunk}. {@code pointer} is what kernels and copies take;
 * it is 256-byte aligned. Valid until freed or until the pool closes.
 */
public record DeviceBuffer(CUdeviceptr pointer, long bytes, int chunk, long offset) {
    /** The device address {@code byteOffset} bytes in, after checking that a range of {@code length} fits. */
    public CUdeviceptr at(long byteOffset, long length) {
        if (byteOffset < 0 || length < 0 || byteOffset + length > bytes) {
            throw new IllegalArgumentException("range [" + byteOffset + ", " + (byteOffset + length)
                + ") is outside this device buffer of " + bytes + " bytes");
        }
        return pointer.withByteOffset(byteOffset);
    }
}
