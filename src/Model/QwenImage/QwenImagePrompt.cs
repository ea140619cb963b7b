using PureFlux.Model.Text;

namespace PureFlux.Model.QwenImage;

/// <summary>
/// Qwen-Image's prompt formatting (diffusers QwenImagePipeline._get_qwen_prompt_embeds; facts from
/// pipeline_qwenimage.py @ 58eb52c0): the prompt goes into a fixed system + user template (not the chat template),
/// the formatted text is tokenized as a whole and cut at 1024 + 34 tokens; the encoder runs on all of it; the first 34
/// rows (the system prompt and "&lt;|im_start|&gt;user\n") are dropped and the rest — the prompt tokens and the 5 template
/// tail tokens "&lt;|im_end|&gt;\n&lt;|im_start|&gt;assistant\n" — are kept, at most max_sequence_length (512) of them.
/// </summary>
public static class QwenImagePrompt
{
    public const string Template = "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n{0}<|im_end|>\n<|im_start|>assistant\n";
    /// <summary>Leading template tokens whose hidden states are dropped (prompt_template_encode_start_idx).</summary>
    public const int DropTokens = 34;
    /// <summary>The tokenizer's max length (tokenizer_max_length) before the drop is added to it.</summary>
    public const int TokenizerMaxLength = 1024;
    /// <summary>The pipeline's default max_sequence_length: kept rows beyond it are cut.</summary>
    public const int MaxSequenceLength = 512;

    public static string Format(string prompt) => string.Format(System.Globalization.CultureInfo.InvariantCulture, Template, prompt);

    /// <summary>
    /// The token ids the encoder runs on (the whole formatted prompt, at most 1024 + 34) and how many rows after the
    /// first 34 are kept (at most 512), with a warning when anything was cut.
    /// </summary>
    public static (int[] Ids, int Kept, string? Warning) Tokenize(Qwen3Tokenizer tokenizer, string prompt)
    {
        var all = tokenizer.Encode(Format(prompt));
        int limit = TokenizerMaxLength + DropTokens;
        var ids = all.Length > limit ? all[..limit] : all;
        if (ids.Length <= DropTokens)
            throw new ArgumentException($"the formatted prompt has {ids.Length} tokens; Qwen-Image's template alone is {DropTokens + 5}: tokenizer data does not match");
        int kept = Math.Min(ids.Length - DropTokens, MaxSequenceLength);
        string? warning = all.Length - DropTokens > MaxSequenceLength
            ? $"the prompt is {all.Length - DropTokens} tokens with the template's tail; only the first {MaxSequenceLength} condition the image (max_sequence_length)"
            : null;
        // The encoder output past the kept rows is never used: causal attention lets the kept rows ignore it.
        return (ids[..(DropTokens + kept)], kept, warning);
    }
}
