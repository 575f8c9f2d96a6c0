package guardrail

// Pack exfiltration: requests to send data out (to a URL, an e-mail
// address, a webhook), to reveal the reader's prompt or secrets, to leak
// data through a rendered image URL; and secrets that appear in a message.

const (
	// Destinations outside: a URL, an e-mail address, a known sink.
	destLit = `(?:https?://|ftp://|wss?://|www\.|[a-z0-9._%+\-]+(?:@)[a-z0-9\-]+(?:\.[a-z0-9\-]+){0,6}\.[a-z]{2,}\b|webhook\.site|pastebin|requestbin|ngrok|hooks\.slack\.com|discord(?:app)?\.com/api/webhooks|transfer\.sh|burpcollaborator|interact\.sh|pipedream)`
	destURL = `(?:https?://|ftp://|wss?://|www\.|webhook\.site|pastebin|requestbin|ngrok|hooks\.slack\.com|discord(?:app)?\.com/api/webhooks|transfer\.sh|burpcollaborator|interact\.sh|pipedream|(?:my|our|an? (?:external|remote|outside|third[- ]party|attacker|personal|private)) (?:server|endpoint|webhook|bucket|site|website|domain|api))`
	destEN  = `(?:` + destLit + `|(?:this|that|the following|the below|my|our|an? (?:external|remote|outside|third[- ]party|attacker|personal|private)) (?:url|link|address|endpoint|webhook|server|domain|site|website|email(?: address)?|inbox|bucket|pastebin|channel|api))`

	sendEN = `(?:send|sends|forward|post|upload|email|e-mail|mail|transmit|exfiltrate|leak|submit|deliver|relay|paste|copy|share|dump|push|beam|ship|pipe|curl|transfer|export|sync|replicate|publish)`
	// Things nobody should send out on a peer's say-so.
	sensitiveEN = `(?:contents? of|conversation(?: history| log)?|chat(?: history| log|s)|(?:message|chat|conversation|browsing|search) history|transcripts?|system prompts?|(?:your|the|its) instructions|memory|context window|credentials?|secrets?|passwords?|passphrases?|(?:access|auth|bearer|session|refresh|api) tokens?|api[- _]?keys?|access keys?|private keys?|ssh keys?|secret keys?|cookies?|session (?:ids?|cookies?|tokens?|keys?)|env(?:ironment)? (?:variables|vars)|\.env(?: files?)?|config(?:uration)? files? with|customer (?:data|records|lists?|emails|details|database)|user (?:data|records|emails|details|database)|personal (?:data|information|details)|pii|inbox|wallet(?: keys?| seed)?|seed phrases?|credit card (?:numbers?|details|data)|card numbers?|source code|codebase|private repositor\pL+|/etc/passwd|id_rsa|~/\.ssh|\.aws/credentials)`
	// Ordinary nouns that become suspicious with "all", "every", "entire".
	bulkEN = `(?:all|every|entire|whole|everything|all of (?:the|your|my|our))(?: (?:the|your|my|our|of|previous|prior|stored|available|internal|private)){0,6} (?:data|files|documents|messages|emails|records|logs|notes|information|info|results|conversations|chats|repositories|repos|database|contacts|attachments|memory|it|this)`

	sendDE = `(?:sende|sendet|senden sie|schicke|schick|schickt|schicken sie|leite|leitet|leiten sie|übermittle|übermitteln sie|übertrage|übertragen sie|lade|laden sie|kopiere|kopieren sie|poste|posten sie|maile|mailen sie|exportiere|veröffentliche)`
	sensDE = `(?:inhalt\pL*|passw(?:ö|o)rt\pL*|kennw(?:ö|o)rt\pL*|zugangsdaten|anmeldedaten|api-schl(?:ü|u)ssel\pL*|api-keys?|schl(?:ü|u)ssel|geheimnisse|tokens?|systemprompts?|systemanweisung\pL*|verlauf|chatverlauf|gesprächsverlauf|konversation|umgebungsvariablen|kundendaten|benutzerdaten|personenbezogenen? daten|alle daten|alle dateien|sämtliche daten|quellcode|\.env|e-mails|postfach)`
	sendFR = `(?:envoie|envoyez|envoyer|transfère|transférez|transfere|transférer|transmets|transmettez|transmettre|poste|postez|télécharge|téléchargez|téléverse|téléversez|copie|copiez|partage|partagez|expédie|expédiez|exporte|exportez|publie|publiez)(?:-(?:moi|nous|les|le|la))?`
	sensFR = `(?:contenu|mots? de passe|identifiants|clés? (?:d'api|api|secrètes?|privées?|ssh)|secrets|jetons?|tokens?|prompt système|instructions système|historique|conversation|variables d'environnement|données (?:clients|personnelles|des clients|des utilisateurs|utilisateurs)|toutes les données|tous les fichiers|tous les documents|code source|fichier \.env|\.env|e-mails|courriels|boîte de réception)`
	sendES = `(?:envía|envia|enviad|envíe|envie|envíame|enviame|enviar|reenvía|reenvia|reenvíe|manda|mándame|mandame|mande|transfiere|transfiera|sube|suba|publica|publique|copia|copie|comparte|comparta|exporta|exporte)`
	sensES = `(?:contenido|contraseñas?|credenciales|claves? (?:de )?api|claves? (?:secretas?|privadas?|ssh)|secretos|tokens?|prompt del sistema|instrucciones del sistema|historial|conversación|conversacion|variables de entorno|datos (?:de (?:los )?clientes|personales|de (?:los )?usuarios)|todos los datos|todos los archivos|todos los documentos|código fuente|codigo fuente|archivo \.env|\.env|correos|bandeja de entrada)`
	sendPT = `(?:envie|envia|enviar|envie-me|encaminhe|encaminha|mande|manda|transfira|transfere|publique|publica|copie|copia|compartilhe|compartilha|suba|carregue|exporte|exporta)`
	sensPT = `(?:conteúdo|conteudo|senhas?|credenciais|chaves? (?:de )?api|chaves? (?:secretas?|privadas?|ssh)|segredos|tokens?|prompt do sistema|instruções do sistema|instrucoes do sistema|histórico|historico|conversa|variáveis de ambiente|variaveis de ambiente|dados (?:dos )?(?:clientes|pessoais|usuários|usuarios)|todos os dados|todos os arquivos|todos os documentos|código[- ]fonte|codigo[- ]fonte|arquivo \.env|\.env|e-mails|caixa de entrada)`
	sendRU = `(?:отправь|отправьте|отправить|перешли|перешлите|переслать|загрузи|загрузите|передай|передайте|скопируй|скопируйте|вышли|вышлите|опубликуй|опубликуйте|слей|слейте|выгрузи|выгрузите)`
	sensRU = `(?:содержимое|пароли|пароль|учетные данные|учётные данные|ключи api|api[- ]ключи|api[- ]ключ|ключ api|секреты|секретные ключи|приватные ключи|токены?|системный промпт|системные инструкции|историю|переписку|переменные окружения|все данные|все файлы|все документы|данные клиентов|персональные данные|исходный код|\.env|почту|письма)`
	sensZH = `(?:内容|密码|口令|凭证|凭据|密钥|秘钥|私钥|api ?key|api密钥|令牌|token|系统提示(?:词)?|聊天记录|对话记录|历史记录|环境变量|所有数据|所有文件|全部数据|全部文件|客户数据|用户数据|个人信息|源代码|源码|\.env|邮件)`
	sendZH = `(?:发送|发到|发往|转发|上传|提交|传到|传给|发给|寄给|复制到|贴到|粘贴到|导出到|同步到|post到)`

	// Asking for the reader's prompt.
	revealVerbEN = `(?:reveal|print|show|output|display|tell|give|repeat|leak|dump|list|write out|spell out|disclose|share|return|echo|recite|expose|provide|paste|type out|read (?:me|out|back))`
	revealFill   = `(?:me|us|back|out|all|the|your|its|any|of|full|entire|complete|exact|original|hidden|initial|secret|raw|current|above|whole|internal|underlying|first|verbatim|exactly|word for word|contents of|text of|real|actual|stored|configured|saved)`
	revealReq    = `(?:me|us|your|all|any|full|entire|complete|exact|original|hidden|initial|secret|raw|internal|underlying|verbatim|exactly|word for word|real|actual|back|stored|configured|saved)`
	promptEN     = `(?:system prompts?|system message|system instructions|initial (?:prompt|instructions)|hidden (?:prompt|instructions)|original (?:prompt|instructions)|developer (?:message|prompt|instructions)|pre-?prompt|meta-?prompt|(?:instructions|prompt) (?:you were given|you received|above|that you were given|that were given to you)|prompt instructions|instructions verbatim|configuration prompt)`
	secretEN     = `(?:api[- _]?keys?|secret keys?|secrets|credentials|passwords?|passphrases?|access tokens?|auth\pL* tokens?|bearer tokens?|session (?:tokens?|cookies?|ids?)|cookies|private keys?|ssh keys?|environment variables|env vars|\.env(?: file)?|aws (?:keys?|credentials|secret)|database (?:password|credentials|connection strings?)|connection strings?|wallet (?:keys?|seed)|seed phrases?)`
)

func exfiltrationRules() []ruleDef {
	return []ruleDef{{
		name:        "send-to-destination",
		desc:        "asks to send, forward or upload conversation contents, prompts, secrets or bulk data to a URL, e-mail address or external endpoint",
		sev:         Critical,
		instruction: true,
		patterns: []string{
			sendEN + `(?: (?:me|us|them|it|over|out|along|back))?(?: (?:all|the|your|its|any|every|each|of|full|entire|complete|raw|whole|current|previous|this|that|these|those|user's|users'|customer's|my|our|stored|saved|private|internal)){0,6} ` + sensitiveEN + `…(?: |~[,:]~)(?:to|at|into|via|using|on|onto|through|over to|toward|towards) …` + destEN,
			sendEN + `(?: (?:me|us|them|over|out|along))? ` + bulkEN + `…(?: |~[,:]~)(?:to|at|into|via|using|on|onto|through|over to) …` + destURL,
			`(?:collect|gather|find|grab|extract|harvest|read|dump|copy|list|search for|look for)(?: (?:all|every|each|any|the|your|of)){0,6} ` + sensitiveEN + `…(?:and|then|,) (?:` + sendEN + `)(?: (?:them|it|those|everything|all of (?:them|it)|the (?:list|results)))?…(?: |~[,:]~)(?:to|at|into|via|on|onto) …` + destEN,
			`(?:make|send|issue|perform|do·a|do·an|fire) an? (?:get|post|put|http|https|web|curl|fetch|network) (?:request|call) (?:to )?…` + destLit + `…(?:with|containing|including|that includes|appending|and (?:include|append|attach)|carrying|passing) (?:the |your |all |its |any |of ){0,6}` + sensitiveEN,
			`(?:include|append|embed|add|put|insert|encode|attach) (?:the |your |all |its |any |of ){0,6}` + sensitiveEN + ` (?:in|into|to|as|inside) (?:the |a |an |your )?(?:url|link|query(?: string| parameters?)?|image(?: url| link)?|markdown image|request|headers?|dns (?:query|name|lookup)|subdomain|webhook)`,
			sendDE + `(?: \pL+){0,5} ` + sensDE + `…(?:an|zu|nach|auf|per|unter) …` + destLit,
			sendFR + `(?: \pL+){0,5} ` + sensFR + `…(?:à|a|vers|sur|au|par) …` + destLit,
			sendES + `(?: \pL+){0,5} ` + sensES + `…(?:a|al|hacia|en|por) …` + destLit,
			sendPT + `(?: \pL+){0,5} ` + sensPT + `…(?:para|a|ao|em|por|pro) …` + destLit,
			sendRU + `(?: \pL+){0,5} ` + sensRU + `…(?:на|по адресу|в|к|через) …` + destLit,
			`(?:把|将)?.{0,30}?` + sensZH + `.{0,30}?` + sendZH + `\s*(?:到|给|至)?.{0,20}?` + destLit,
			sendZH + `.{0,30}?` + sensZH + `.{0,30}?(?:到|给|至).{0,20}?` + destLit,
		},
	}, {
		name:        "secret-request",
		desc:        "asks the reader to reveal its system prompt, instructions, API keys, passwords, tokens or environment",
		sev:         High,
		instruction: true,
		patterns: []string{
			revealVerbEN + `(?: ` + revealFill + `){0,4} ` + revealReq + `(?: ` + revealFill + `){0,4} ` + promptEN,
			revealVerbEN + `(?: ` + revealFill + `){0,3} ` + promptEN + ` (?:verbatim|word for word|in full|exactly|in its entirety|above|in a code block)`,
			revealVerbEN + `(?: ` + revealFill + `){0,4} ` + revealReq + `(?: ` + revealFill + `){0,4} ` + secretEN + `\b`,
			`(?:repeat|print|output|show|reveal|return|copy|recite) (?:all |back )?(?:the |all the |everything |all )?(?:text|words|content|everything|lines|instructions|prompt) (?:above|before this|preceding this|that came before|at the (?:start|beginning) of (?:this|the|your) (?:conversation|context|prompt))`,
			`send (?:me|us)(?: ` + revealFill + `){0,4} (?:` + secretEN + `|` + promptEN + `)`,
			`what (?:is|are|was|were) your (?:full |exact |secret |hidden |original |initial |real )?(?:system prompt|instructions|initial prompt|api[- _]?keys?|passwords?|secrets?|credentials|tokens?|environment variables)~(?:\?|\.|,|$| (?:verbatim|exactly|word))`,
			`(?:zeig|zeige|zeigt|zeigen sie|gib|gebt|geben sie|nenne|nennen sie|verrate|verraten sie|drucke|wiederhole|wiederholen sie|teile|teilen sie|liste|verrat|schreib|schreibe)(?: (?:mir|uns|bitte|alle|sämtliche|deine|deinen|dein|ihre|ihren|ihr|den|die|das|vollständigen|vollständig|kompletten|geheimen|ursprünglichen|versteckten|wortwörtlich|genau|aus)){0,6} (?:mir|uns|alle|sämtliche|deine|deinen|dein|ihre|ihren|vollständigen|kompletten|geheimen|ursprünglichen|versteckten|wortwörtlich)(?: (?:den|die|das|deine|deinen|dein|ihre|ihren|vollständigen|kompletten|geheimen|ursprünglichen|versteckten)){0,6} (?:systemprompt|system-prompt|systemanweisung\pL*|systemnachricht|anfangsanweisungen|anweisungen|api-schl(?:ü|u)ssel\pL*|api-keys?|passw(?:ö|o)rt\pL*|zugangsdaten|anmeldedaten|geheimnisse|geheimen schl(?:ü|u)ssel|privaten schl(?:ü|u)ssel|tokens?|umgebungsvariablen|\.env)`,
			`(?:montre|montrez|affiche|affichez|donne|donnez|révèle|révélez|revele|répète|répétez|repete|imprime|imprimez|dis|dites|liste|listez|partage|partagez|divulgue|divulguez|communique|communiquez|écris|écrivez)(?:-(?:moi|nous))?(?: (?:moi|nous|tous|toutes|tes|vos|ton|ta|votre|le|la|les|l|ses|complet|complète|intégral\pL*|exact\pL*|mot pour mot|caché\pL*|initial\pL*|secret\pL*|original\pL*)){0,6} (?:prompt (?:système|systeme|initial|caché)|instructions? (?:système|systeme|initiales|cachées|d'origine)|message système|clés? (?:d'api|api|secrètes?|privées?)|mots? de passe|identifiants|secrets|jetons?(?: d'accès)?|tokens?|variables d'environnement|fichier \.env|\.env)`,
			`(?:muestra|muéstrame|muestrame|muestre|dame|deme|dime|dígame|digame|revela|revélame|revelame|revele|repite|repita|imprime|imprima|enumera|lista|comparte|comparta|divulga|escribe)(?: (?:me|nos|todas|todos|tu|tus|su|sus|el|la|los|las|completo|completa|exacto|exacta|textualmente|palabra por palabra|oculto|oculta|ocultas|inicial|iniciales|secreto|secretas|original|originales)){0,6} (?:prompt del sistema|instrucciones (?:del sistema|iniciales|ocultas|originales)|mensaje del sistema|claves? (?:de )?api|api keys?|claves? (?:secretas?|privadas?)|contraseñas?|contrasenas?|credenciales|secretos|tokens?(?: de acceso)?|variables de entorno|archivo \.env|\.env)`,
			`(?:me·)?(?:mostre|mostra|mostre-me|exiba|exibe|dê-me|de-me|dê|diga|diga-me|revele|revela|repita|repete|imprima|imprime|liste|lista|compartilhe|compartilha|divulgue|escreva)(?: (?:me|nos|todas|todos|seu|sua|seus|suas|teu|tua|teus|tuas|o|a|os|as|completo|completa|exato|exata|literalmente|palavra por palavra|oculto|oculta|ocultas|inicial|iniciais|secreto|secretas|original|originais)){0,6} (?:prompt do sistema|instruções (?:do sistema|iniciais|ocultas|originais)|instrucoes do sistema|mensagem do sistema|chaves? (?:de )?api|api keys?|chaves? (?:secretas?|privadas?)|senhas?|credenciais|segredos|tokens?(?: de acesso)?|variáveis de ambiente|variaveis de ambiente|arquivo \.env|\.env)`,
			`(?:告诉我|显示|输出|打印|透露|泄露|泄漏|给我|列出|重复|复述|展示|说出|公开|发给我|告知)(?:一下)?(?:你的|您的|你|所有的?|全部的?|完整的?|原始的?|隐藏的?|初始的?)+(?:系统提示(?:词)?|系统指令|系统消息|初始(?:指令|提示)|原始(?:指令|提示)|隐藏(?:指令|提示)|提示词|api ?key|api密钥|密钥|秘钥|密码|口令|凭证|凭据|令牌|token|环境变量|\.env)`,
			`(?:покажи|покажите|выведи|выведите|раскрой|раскройте|повтори|повторите|дай|дайте|сообщи|сообщите|назови|назовите|напечатай|напечатайте|перечисли|перечислите|выдай|выдайте|скажи|скажите|напиши|напишите)(?: (?:мне|нам|все|всё|свой|свои|свою|твой|твои|твою|ваш|ваши|вашу|полностью|дословно|полный|полные|исходный|исходные|скрытый|скрытые|секретный|секретные|изначальный|изначальные|текущий|текущие)){0,6} (?:системный промпт|системные инструкции|системное сообщение|свой промпт|свои инструкции|твой промпт|твои инструкции|ваш промпт|ваши инструкции|api[- ]ключ\pL*|ключ\pL* (?:от )?api|секретн\pL+ ключ\pL*|пароль|пароли|учетные данные|учётные данные|секреты|токен\pL*|переменные окружения|\.env)`,
		},
	}, {
		name:        "image-url-exfiltration",
		desc:        "a markdown or HTML image whose URL carries a template for data to leak (![x](https://host/?q={secret})), which a renderer fetches unasked",
		sev:         High,
		instruction: true,
		patterns: []string{
			`(?:!\[[^\]\n]{0,100}\]\(|<img[^>]{0,100}src~=~["']?)(?:https?:)?//[^\s)"'>]{1,300}[?&/=][^\s)"'>]{0,40}(?:\{\{?|\$\{?|%7b|<|\[)~[a-z_ ]{0,30}(?:secret|key|token|password|passwd|prompt|history|conversation|chat|memory|context|credential|cookie|session|data|content|message|email|summary|answer|info|user|input|ssn|card)`,
			`(?:render|display|show|output|include|embed|insert) (?:the |this |an? )?(?:following )?(?:markdown )?image~:?…(?:!\[[^\]\n]{0,100}\]\(|<img)…(?:https?:)?//[^\s)"'>]{1,300}\?`,
		},
	}, {
		name:      "private-key",
		desc:      "a private key block (PEM, OpenSSH, PGP) in the message",
		sev:       High,
		def:       Redact,
		sensitive: true,
		patterns: []string{
			`-----begin (?:[a-z0-9]+ ){0,6}private key(?: block)?-----`,
		},
	}, {
		name:      "api-key",
		desc:      "a credential in a vendor's format in the message: cloud, VCS, chat, payment or model-provider API key, webhook URL, JWT",
		sev:       High,
		def:       Redact,
		sensitive: true,
		patterns: []string{
			`\b(?:akia|asia|aroa|aida|agpa|anpa|anva|aipa)[0-9a-z]{16}\b`,
			`aws_secret_access_key~[:=]~[0-9a-z/+]{40,}`,
			`\b(?:ghp|gho|ghu|ghs|ghr)_[0-9a-z]{36,}\b`,
			`\bgithub_pat_[0-9a-z_]{50,}\b`,
			`\bglpat-[0-9a-z_\-]{20,}\b`,
			`\bxox[abposr]-[0-9a-z\-]{10,}\b`,
			`hooks\.slack\.com/services/t[0-9a-z]{6,}/b[0-9a-z]{6,}/[0-9a-z]{16,}`,
			`\bsk-(?:proj-|svcacct-|admin-|ant-(?:api|admin)\d{2}-)?[0-9a-z_\-]{32,}`,
			`\baiza[0-9a-z_\-]{35}\b`,
			`\b(?:sk|rk)_(?:live|test)_[0-9a-z]{20,}\b`,
			`\bsg\.[0-9a-z_\-]{20,}\.[0-9a-z_\-]{30,}\b`,
			`\beyj[0-9a-z_\-]{10,}\.eyj[0-9a-z_\-]{10,}\.[0-9a-z_\-]{10,}`,
			`\bnpm_[0-9a-z]{36}\b`,
			`\bpypi-ag[0-9a-z_\-]{50,}`,
			`\bhf_[0-9a-z]{34,}\b`,
		},
		// Real keys are random: a match without a digit is a word.
		veto: `^[^0-9]*$`,
	}, {
		name:      "password-assignment",
		desc:      "a secret assigned in the message (password=..., api_key: ..., client_secret=...) or a connection string with a password",
		sev:       High,
		def:       Redact,
		sensitive: true,
		patterns: []string{
			`\b(?:api[_\-]?key|apikey|secret[_\-]?(?:access[_\-]?)?key|client[_\-]?secret|access[_\-]?token|auth[_\-]?token|refresh[_\-]?token|private[_\-]?key|password|passwd|db[_\-]?pass(?:word)?)["']?~[:=]~["']?[^\s"',;<>{}()\[\]]{10,}`,
			`\b(?:postgres(?:ql)?|mysql|mongodb(?:\+srv)?|redis|rediss|amqps?|mssql|sqlserver)://[^\s:/@]+:[^\s@/]{6,}@`,
		},
		// Placeholders, references to where the secret lives, and plain
		// identifiers (password = get_password) are not secrets.
		veto: `(?:your|example|sample|xxx|\*\*\*|placeholder|changeme|change_me|redacted|dummy|<|\$\{|\{\{|%s|os\.|process\.env|getenv|environ|env\[|secrets\.|vault|config\.|settings\.|\.\.\.|replace|insert|:password@|:pass@|[:=]~["']?[a-z_.\-]+$)`,
	}}
}
