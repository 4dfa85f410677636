#nullable enable
using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using Microsoft.Build.Framework;
using Microsoft.Build.Utilities;

/// <summary>
/// Marks one GLIBCXX version requirement of libLibTorchSharp.so as weak (VER_FLG_WEAK) when the system
/// libstdc++ does not define that version. Edits 2 bytes of .gnu.version_r in the output copy only.
/// </summary>
public sealed class WeakenGlibcxxRequirement : Task
{
    [Required] public string[] Directories { get; set; } = Array.Empty<string>();
    [Required] public string Version { get; set; } = "";

    private const ushort VerFlagWeak = 0x2;
    private const uint ShtGnuVerneed = 0x6ffffffe;

    public override bool Execute()
    {
        if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return true;
        string? system = FindSystemLibStdCxx();
        if (system is null)
        {
            Log.LogMessage(MessageImportance.Low, "BlipSharp native fix: no system libstdc++.so.6 found; nothing to do.");
            return true;
        }
        if (ContainsVersion(File.ReadAllBytes(system), Version))
        {
            Log.LogMessage(MessageImportance.Low, $"BlipSharp native fix: {system} defines {Version}; nothing to do.");
            return true;
        }
        foreach (string dir in Directories)
        {
            if (string.IsNullOrWhiteSpace(dir)) continue;
            string path = Path.Combine(dir, "libLibTorchSharp.so");
            if (!File.Exists(path)) continue;
            byte[] data = File.ReadAllBytes(path);
            int changed = Weaken(data, Version, out int alreadyWeak);
            if (changed > 0)
            {
                string tmp = path + ".tmp";
                File.WriteAllBytes(tmp, data);
                File.Copy(tmp, path, true);
                File.Delete(tmp);
                Log.LogMessage(MessageImportance.High, $"BlipSharp native fix: marked {Version} weak in {path} (system libstdc++ lacks it).");
            }
            else if (alreadyWeak == 0)
            {
                Log.LogMessage(MessageImportance.Low, $"BlipSharp native fix: {path} does not require {Version}.");
            }
        }
        return !Log.HasLoggedErrors;
    }

    private static string? FindSystemLibStdCxx()
    {
        foreach (string candidate in new[]
                 {
                     "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6",
                     "/usr/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
                 })
        {
            if (File.Exists(candidate)) return candidate;
        }
        return null;
    }

    private static bool ContainsVersion(byte[] data, string version)
    {
        byte[] needle = Encoding.ASCII.GetBytes(version + "\0");
        for (int i = 0; i + needle.Length <= data.Length; i++)
        {
            int k = 0;
            while (k < needle.Length && data[i + k] == needle[k]) k++;
            if (k == needle.Length) return true;
        }
        return false;
    }

    /// <summary>Sets VER_FLG_WEAK on every vernaux entry named <paramref name="version"/>; returns how many changed.</summary>
    private int Weaken(byte[] data, string version, out int alreadyWeak)
    {
        alreadyWeak = 0;
        if (data.Length < 64 || data[0] != 0x7f || data[1] != (byte)'E' || data[2] != (byte)'L' || data[3] != (byte)'F' || data[4] != 2)
        {
            Log.LogWarning("BlipSharp native fix: not an ELF64 file; left unchanged.");
            return 0;
        }
        long shoff = BitConverter.ToInt64(data, 0x28);
        int shentsize = BitConverter.ToUInt16(data, 0x3A);
        int shnum = BitConverter.ToUInt16(data, 0x3C);
        int changed = 0;
        for (int i = 0; i < shnum; i++)
        {
            long sh = shoff + (long)i * shentsize;
            uint type = BitConverter.ToUInt32(data, (int)sh + 4);
            if (type != ShtGnuVerneed) continue;
            long offset = BitConverter.ToInt64(data, (int)sh + 0x18);
            int link = (int)BitConverter.ToUInt32(data, (int)sh + 0x28);
            int count = (int)BitConverter.ToUInt32(data, (int)sh + 0x2C);
            long strtab = BitConverter.ToInt64(data, (int)(shoff + (long)link * shentsize + 0x18));
            long p = offset;
            for (int n = 0; n < count; n++)
            {
                int cnt = BitConverter.ToUInt16(data, (int)p + 2);
                uint aux = BitConverter.ToUInt32(data, (int)p + 8);
                uint next = BitConverter.ToUInt32(data, (int)p + 12);
                long a = p + aux;
                for (int j = 0; j < cnt; j++)
                {
                    ushort flags = BitConverter.ToUInt16(data, (int)a + 4);
                    uint name = BitConverter.ToUInt32(data, (int)a + 8);
                    uint anext = BitConverter.ToUInt32(data, (int)a + 12);
                    if (ReadCString(data, strtab + name) == version)
                    {
                        if ((flags & VerFlagWeak) == 0)
                        {
                            ushort updated = (ushort)(flags | VerFlagWeak);
                            data[a + 4] = (byte)(updated & 0xff);
                            data[a + 5] = (byte)(updated >> 8);
                            changed++;
                        }
                        else alreadyWeak++;
                    }
                    a += anext;
                }
                if (next == 0) break;
                p += next;
            }
        }
        return changed;
    }

    private static string ReadCString(byte[] data, long start)
    {
        int end = Array.IndexOf(data, (byte)0, (int)start);
        return Encoding.ASCII.GetString(data, (int)start, end - (int)start);
    }
}
