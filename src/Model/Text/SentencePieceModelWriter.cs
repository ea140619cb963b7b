using System.Text;

namespace PureFlux.Model.Text;

/// <summary>
/// Writes a SentencePiece <c>ModelProto</c> (the protobuf of a <c>.model</c> file) for a unigram vocabulary, so
/// Microsoft.ML.Tokenizers' <c>SentencePieceTokenizer</c> can run a vocabulary that came as a Hugging Face
/// tokenizer.json. Field numbers are sentencepiece_model.proto's (pieces 1 {piece 1, score 2, type 3},
/// trainer_spec 2 {model_type 3, vocab_size 4, unk_id 40, bos_id 41, eos_id 42, pad_id 43}, normalizer_spec 3
/// {name 1, precompiled_charsmap 2, add_dummy_prefix 3, remove_extra_whitespaces 4, escape_whitespaces 5}).
/// </summary>
internal static class SentencePieceModelWriter
{
    /// <summary>SentencePiece piece types (ModelProto.SentencePiece.Type).</summary>
    public enum PieceType { Normal = 1, Unknown = 2, Control = 3, UserDefined = 4 }

    public sealed record Spec(
        IReadOnlyList<(string Piece, float Score, PieceType Type)> Pieces,
        int UnkId, int BosId, int EosId, int PadId,
        byte[] PrecompiledCharsmap, bool AddDummyPrefix, bool RemoveExtraWhitespaces);

    public static byte[] Write(Spec spec)
    {
        var model = new MemoryStream();
        var piece = new MemoryStream();
        foreach (var (text, score, type) in spec.Pieces)
        {
            piece.SetLength(0);
            WriteBytes(piece, 1, Encoding.UTF8.GetBytes(text));
            WriteFloat(piece, 2, score);
            WriteVarint(piece, 3, (int)type);
            WriteBytes(model, 1, piece.ToArray());
        }

        var trainer = new MemoryStream();
        WriteVarint(trainer, 3, 1); // model_type UNIGRAM
        WriteVarint(trainer, 4, spec.Pieces.Count);
        WriteVarint(trainer, 40, spec.UnkId);
        WriteVarint(trainer, 41, spec.BosId);
        WriteVarint(trainer, 42, spec.EosId);
        WriteVarint(trainer, 43, spec.PadId);
        WriteBytes(model, 2, trainer.ToArray());

        var normalizer = new MemoryStream();
        WriteBytes(normalizer, 1, "precompiled"u8.ToArray());
        WriteBytes(normalizer, 2, spec.PrecompiledCharsmap);
        WriteVarint(normalizer, 3, spec.AddDummyPrefix ? 1 : 0);
        WriteVarint(normalizer, 4, spec.RemoveExtraWhitespaces ? 1 : 0);
        WriteVarint(normalizer, 5, 1); // escape_whitespaces: ' ' → '▁'
        WriteBytes(model, 3, normalizer.ToArray());
        return model.ToArray();
    }

    private static void WriteTag(Stream s, int field, int wireType) => WriteRaw(s, (ulong)((field << 3) | wireType));

    private static void WriteRaw(Stream s, ulong v)
    {
        while (v >= 0x80)
        {
            s.WriteByte((byte)(v | 0x80));
            v >>= 7;
        }
        s.WriteByte((byte)v);
    }

    /// <summary>An int32 field; negative values take ten bytes (two's complement as uint64), as protobuf writes them.</summary>
    private static void WriteVarint(Stream s, int field, long value)
    {
        WriteTag(s, field, 0);
        WriteRaw(s, (ulong)value);
    }

    private static void WriteFloat(Stream s, int field, float value)
    {
        WriteTag(s, field, 5);
        Span<byte> b = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteSingleLittleEndian(b, value);
        s.Write(b);
    }

    private static void WriteBytes(Stream s, int field, byte[] value)
    {
        WriteTag(s, field, 2);
        WriteRaw(s, (ulong)value.Length);
        s.Write(value);
    }
}
