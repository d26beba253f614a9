package dev.loragateway.kernels.cuda;

/**
 * A {@link DeviceMemoryPool} cannot place a buffer: its limit is reached, or the device refused a
 * new chunk. The message says how many bytes were asked for and how the pool stands.
 */
public final class DeviceMemoryExhaustedException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public DeviceMemoryExhaustedException(String message) {
        super(message);
    }
}
