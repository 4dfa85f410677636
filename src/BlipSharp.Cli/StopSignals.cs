using System.Runtime.InteropServices;

namespace BlipSharp.Cli;

/// <summary>
/// Ctrl+C and SIGTERM as a cancellation token for long jobs: the first one asks the job to stop after its current step
/// (it writes a checkpoint); a second Ctrl+C ends the process at once.
/// </summary>
internal sealed class StopSignals : IDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Action<string> _log;
    private readonly PosixSignalRegistration _sigterm;

    public StopSignals(Action<string> log)
    {
        _log = log;
        Console.CancelKeyPress += OnCancelKey;
        _sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            _stop.Cancel();
        });
    }

    public CancellationToken Token => _stop.Token;

    private void OnCancelKey(object? sender, ConsoleCancelEventArgs e)
    {
        if (_stop.IsCancellationRequested) return; // a second Ctrl+C ends the process at once
        e.Cancel = true;
        _stop.Cancel();
        _log("stopping after the current step (Ctrl+C again to abort without a checkpoint)");
    }

    public void Dispose()
    {
        Console.CancelKeyPress -= OnCancelKey;
        _sigterm.Dispose();
        _stop.Dispose();
    }
}
