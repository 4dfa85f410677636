using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace BlipSharp.Tests.Checkpoints.Hub;

/// <summary>
/// A loopback HTTP/1.1 server that answers like the Hugging Face Hub's <c>/resolve/</c> endpoint for one repository
/// served from a folder: HEAD/GET with <c>X-Repo-Commit</c> and a git-sha1 ETag for small files; for LFS files
/// (<c>.safetensors</c>, <c>.bin</c>) a 302 to a second listener (another port, so another host for the client) with
/// <c>X-Linked-Etag</c> (sha256) and <c>X-Linked-Size</c>; 404 with <c>X-Error-Code</c>; <c>Range</c> requests. It
/// can require a token, cut a body short, corrupt a byte, and it logs every request.
/// </summary>
public sealed class FakeHubServer : IDisposable
{
    public sealed record Request(string Method, string Target, bool OnCdn, IReadOnlyDictionary<string, string> Headers)
    {
        public string? Header(string name) => Headers.TryGetValue(name.ToLowerInvariant(), out var v) ? v : null;

        /// <summary>The repository file a request was for (the CDN path names it in its query).</summary>
        public string File => OnCdn ? Uri.UnescapeDataString(Target[(Target.IndexOf("?file=", StringComparison.Ordinal) + 6)..]) : Uri.UnescapeDataString(Target.Split("/resolve/")[1].Split('/', 2)[1]);
    }

    public sealed record RepoFile(string Name, byte[] Content, string Etag, bool Lfs);

    private readonly TcpListener _main = new(IPAddress.Loopback, 0);
    private readonly TcpListener _cdn = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<string, int> _cutsLeft = new();
    private long _bodyBytes;

    public FakeHubServer(string repoId, string folder, string? commit = null)
    {
        RepoId = repoId;
        Commit = commit ?? Convert.ToHexStringLower(SHA1.HashData(Encoding.UTF8.GetBytes(repoId + folder)));
        foreach (string path in Directory.GetFiles(folder))
        {
            string name = Path.GetFileName(path);
            byte[] content = System.IO.File.ReadAllBytes(path);
            bool lfs = name.EndsWith(".safetensors", StringComparison.Ordinal) || name.EndsWith(".bin", StringComparison.Ordinal);
            Files[name] = new RepoFile(name, content, lfs ? Sha256(content) : GitBlobSha1(content), lfs);
        }
        _main.Start();
        _cdn.Start();
        _ = AcceptLoop(_main, onCdn: false);
        _ = AcceptLoop(_cdn, onCdn: true);
    }

    public string RepoId { get; }
    public string Commit { get; }
    public Dictionary<string, RepoFile> Files { get; } = new(StringComparer.Ordinal);
    public string Endpoint => $"http://127.0.0.1:{((IPEndPoint)_main.LocalEndpoint).Port}";
    public string CdnAuthority => $"127.0.0.1:{((IPEndPoint)_cdn.LocalEndpoint).Port}";

    /// <summary>When set, Hub (not CDN) requests without <c>Authorization: Bearer {token}</c> get 401 GatedRepo.</summary>
    public string? RequiredToken { get; set; }

    /// <summary>Files answered with 404 EntryNotFound.</summary>
    public HashSet<string> Hidden { get; } = new(StringComparer.Ordinal);

    /// <summary>Files served with one byte flipped (the headers still announce the true etag).</summary>
    public HashSet<string> Corrupt { get; } = new(StringComparer.Ordinal);

    /// <summary>Rewrites the headers of a HEAD answer (file name, headers), to play a hostile server.</summary>
    public Action<string, Dictionary<string, string>>? EditHeadHeaders { get; set; }

    public ConcurrentQueue<Request> Requests { get; } = new();

    /// <summary>Body bytes sent so far over both listeners.</summary>
    public long BodyBytesSent => Interlocked.Read(ref _bodyBytes);

    /// <summary>The next <paramref name="times"/> GETs of <paramref name="file"/> send <paramref name="bytes"/> body bytes, then drop the connection.</summary>
    public void CutAfter(string file, int bytes, int times = 1)
    {
        CutBytes = bytes;
        _cutsLeft[file] = times;
    }

    private int CutBytes { get; set; }

    /// <summary>The next GET of <paramref name="file"/> sends <paramref name="bytes"/> body bytes, then stalls for <paramref name="stall"/> before dropping the connection.</summary>
    public void StallAfter(string file, int bytes, TimeSpan stall)
    {
        CutAfter(file, bytes);
        _stall = stall;
    }

    private TimeSpan _stall = TimeSpan.Zero;

    /// <summary>An old name of the repository: its URLs answer 307 with a relative Location to the current name (a renamed repo).</summary>
    public string? RenamedFrom { get; set; }

    public List<Request> Gets => Requests.Where(r => r.Method == "GET").ToList();

    public List<Request> Heads => Requests.Where(r => r.Method == "HEAD").ToList();

    public void ClearLog() => Requests.Clear();

    public static string Sha256(byte[] content) => Convert.ToHexStringLower(SHA256.HashData(content));

    /// <summary>Git's blob id: sha1 of "blob {size}\0" + content (the Hub's ETag of a non-LFS file).</summary>
    public static string GitBlobSha1(byte[] content) =>
        Convert.ToHexStringLower(SHA1.HashData([.. Encoding.ASCII.GetBytes($"blob {content.Length}\0"), .. content]));

    public void Dispose()
    {
        _stop.Cancel();
        _main.Stop();
        _cdn.Stop();
    }

    private async Task AcceptLoop(TcpListener listener, bool onCdn)
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception)
            {
                return;
            }
            _ = Task.Run(() => Serve(client, onCdn));
        }
    }

    private void Serve(TcpClient client, bool onCdn)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var request = ReadRequest(stream, onCdn);
                if (request is null) return;
                Requests.Enqueue(request);
                Respond(stream, request);
            }
            catch (IOException)
            {
                // the client went away
            }
        }
    }

    private static Request? ReadRequest(NetworkStream stream, bool onCdn)
    {
        var head = new List<byte>();
        while (head.Count < 4 || !(head[^4] == '\r' && head[^3] == '\n' && head[^2] == '\r' && head[^1] == '\n'))
        {
            int b = stream.ReadByte();
            if (b < 0) return null;
            head.Add((byte)b);
        }
        string[] lines = Encoding.ASCII.GetString(head.ToArray()).Split("\r\n", StringSplitOptions.RemoveEmptyEntries);
        string[] start = lines[0].Split(' ');
        var headers = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string line in lines.Skip(1))
        {
            int colon = line.IndexOf(':');
            headers[line[..colon].Trim().ToLowerInvariant()] = line[(colon + 1)..].Trim();
        }
        return new Request(start[0], start[1], onCdn, headers);
    }

    private void Respond(NetworkStream stream, Request request)
    {
        var headers = new Dictionary<string, string>(StringComparer.Ordinal);
        if (request.OnCdn)
        {
            string sha = request.Target.Split('?')[0]["/cdn/".Length..];
            var file = Files.Values.FirstOrDefault(f => f.Etag == sha);
            if (file is null)
            {
                Send(stream, request, 404, headers, []);
                return;
            }
            SendContent(stream, request, file, headers);
            return;
        }

        string prefix = $"/{RepoId}/resolve/";
        if (RenamedFrom is not null && request.Target.StartsWith($"/{RenamedFrom}/resolve/", StringComparison.Ordinal))
        {
            headers["Location"] = prefix + request.Target[$"/{RenamedFrom}/resolve/".Length..];
            Send(stream, request, 307, headers, []);
            return;
        }
        if (!request.Target.StartsWith(prefix, StringComparison.Ordinal))
        {
            headers["X-Error-Code"] = "RepoNotFound";
            headers["X-Error-Message"] = "Repository not found";
            Send(stream, request, 404, headers, []);
            return;
        }
        if (RequiredToken is not null && request.Header("Authorization") != $"Bearer {RequiredToken}")
        {
            headers["X-Error-Code"] = "GatedRepo";
            headers["X-Error-Message"] = $"Access to model {RepoId} is restricted. You must have access to it and be authenticated to access it. Please log in.";
            Send(stream, request, 401, headers, []);
            return;
        }
        string[] rest = request.Target[prefix.Length..].Split('/', 2);
        string revision = Uri.UnescapeDataString(rest[0]);
        string name = string.Join('/', rest[1].Split('/').Select(Uri.UnescapeDataString));
        if (revision != "main" && revision != Commit)
        {
            headers["X-Error-Code"] = "RevisionNotFound";
            Send(stream, request, 404, headers, []);
            return;
        }
        headers["X-Repo-Commit"] = Commit;
        if (Hidden.Contains(name) || !Files.TryGetValue(name, out var repoFile))
        {
            headers["X-Error-Code"] = "EntryNotFound";
            headers["X-Error-Message"] = "Entry not found";
            Send(stream, request, 404, headers, []);
            return;
        }
        if (repoFile.Lfs)
        {
            headers["X-Linked-Etag"] = $"\"{repoFile.Etag}\"";
            headers["X-Linked-Size"] = repoFile.Content.Length.ToString();
            headers["ETag"] = $"\"{GitBlobSha1(Encoding.ASCII.GetBytes("pointer " + name))}\"";
            headers["Location"] = $"http://{CdnAuthority}/cdn/{repoFile.Etag}?file={Uri.EscapeDataString(name)}";
            if (request.Method == "HEAD") EditHeadHeaders?.Invoke(name, headers);
            Send(stream, request, 302, headers, []);
            return;
        }
        headers["ETag"] = $"W/\"{repoFile.Etag}\"";
        if (request.Method == "HEAD") EditHeadHeaders?.Invoke(name, headers);
        SendContent(stream, request, repoFile, headers);
    }

    private void SendContent(NetworkStream stream, Request request, RepoFile file, Dictionary<string, string> headers)
    {
        byte[] content = file.Content;
        if (Corrupt.Contains(file.Name))
        {
            content = (byte[])content.Clone();
            content[content.Length / 2] ^= 0x55;
        }
        headers["Accept-Ranges"] = "bytes";
        int status = 200;
        if (request.Header("Range") is { } range && range.StartsWith("bytes=", StringComparison.Ordinal) && range.EndsWith('-'))
        {
            int from = int.Parse(range["bytes=".Length..^1]);
            if (from >= content.Length)
            {
                headers["Content-Range"] = $"bytes */{content.Length}";
                Send(stream, request, 416, headers, []);
                return;
            }
            headers["Content-Range"] = $"bytes {from}-{content.Length - 1}/{content.Length}";
            content = content[from..];
            status = 206;
        }
        int? cut = null;
        if (request.Method == "GET" && _cutsLeft.TryGetValue(file.Name, out int left) && left > 0)
        {
            _cutsLeft[file.Name] = left - 1;
            cut = Math.Min(CutBytes, content.Length);
        }
        Send(stream, request, status, headers, content, cut);
    }

    private void Send(NetworkStream stream, Request request, int status, Dictionary<string, string> headers, byte[] body, int? cut = null)
    {
        var head = new StringBuilder($"HTTP/1.1 {status} {ReasonPhrase(status)}\r\n");
        headers.TryAdd("Content-Length", body.Length.ToString());
        headers["Connection"] = "close";
        foreach (var (k, v) in headers) head.Append($"{k}: {v}\r\n");
        head.Append("\r\n");
        stream.Write(Encoding.ASCII.GetBytes(head.ToString()));
        if (request.Method == "GET")
        {
            int n = cut ?? body.Length;
            stream.Write(body, 0, n);
            Interlocked.Add(ref _bodyBytes, n);
            if (cut is not null && _stall > TimeSpan.Zero)
            {
                stream.Flush();
                Thread.Sleep(_stall);
                _stall = TimeSpan.Zero;
            }
        }
        stream.Flush();
    }

    private static string ReasonPhrase(int status) => status switch
    {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        307 => "Temporary Redirect",
        401 => "Unauthorized",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Status",
    };
}
