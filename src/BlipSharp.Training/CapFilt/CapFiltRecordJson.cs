using System.Text.Json;

namespace BlipSharp.Training.CapFilt;

/// <summary>
/// One line of a chunk file: <c>{"ordinal", "source", "location", "status": "ok"|"unreadable"|"malformed", "reason"?,
/// "image", "image_id", "web": [{"text", "itm", "itc", "kept"}], "synthetic": [...], "extra": {...}}</c>.
/// </summary>
internal static class CapFiltRecordJson
{
    public static void Write(Utf8JsonWriter w, CapFiltRunner.RecordResult r)
    {
        var record = r.Record;
        w.WriteStartObject();
        w.WriteNumber("ordinal", record.Ordinal);
        w.WriteString("source", record.Source);
        w.WriteString("location", record.Location);
        w.WriteString("status", r.Status);
        if (r.Problem != null) w.WriteString("reason", r.Problem);
        if (record.Image != null) w.WriteString("image", record.ImagePath ?? record.Image.Name);
        if (record.ImageExtension != null) w.WriteString("image_ext", record.ImageExtension);
        if (record.ImageId != null) w.WriteString("image_id", record.ImageId);
        WriteTexts(w, "web", r.Web);
        WriteTexts(w, "synthetic", r.Synthetic);
        w.WriteStartObject("extra");
        foreach (var (name, value) in record.Extra)
        {
            w.WritePropertyName(name);
            value.WriteTo(w);
        }
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteTexts(Utf8JsonWriter w, string name, IReadOnlyList<CapFiltRunner.ScoredText> texts)
    {
        w.WriteStartArray(name);
        foreach (var t in texts)
        {
            w.WriteStartObject();
            w.WriteString("text", t.Text);
            w.WriteNumber("itm", Math.Round(t.Itm, 6));
            w.WriteNumber("itc", Math.Round(t.Itc, 6));
            w.WriteBoolean("kept", t.Kept);
            w.WriteEndObject();
        }
        w.WriteEndArray();
    }
}
