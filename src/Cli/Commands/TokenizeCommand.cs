using System.CommandLine;
using PureFlux.Model.Text;

namespace PureFlux.Cli.Commands;

/// <summary><c>pureflux tokenize [--tokenizer FILE] [--chat] TEXT</c>: print the Qwen3 token ids of TEXT as a JSON array.</summary>
internal static class TokenizeCommand
{
    public static Command Create(CliContext ctx)
    {
        var tokenizer = new Option<string?>("--tokenizer", "-t")
        {
            Description = "tokenizer.json to use (default: the built-in Qwen3 tokenizer)",
        };
        var chat = new Option<bool>("--chat")
        {
            Description = "Wrap TEXT in klein's chat template first (what the text encoder sees, before padding)",
        };
        var text = new Argument<string>("TEXT") { Description = "Text to tokenize (quote it)" };
        var cmd = new Command("tokenize", "Print the token ids of TEXT as JSON.") { tokenizer, chat, text };
        cmd.SetAction(parse =>
        {
            string? file = parse.GetValue(tokenizer);
            var tok = file is null ? Qwen3Tokenizer.BuiltIn : Qwen3Tokenizer.FromFile(file);
            string input = parse.GetRequiredValue(text);
            if (parse.GetValue(chat)) input = Qwen3Tokenizer.ApplyChatTemplate(input);
            ctx.Out.WriteLine("[" + string.Join(",", tok.Encode(input)) + "]");
            return Cli.Ok;
        });
        return cmd;
    }
}
