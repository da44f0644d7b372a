/**
 * Passwords so common that an online guesser tries them first. Ward's engineers wrote this
 * list by hand from what is widely reported about the most frequent passwords in published
 * breach analyses; it is not a copy of any breach corpus and holds only a few hundred
 * entries, so it stops the obvious choices, not every breached password. Entries are
 * lowercase; the check also catches them with digits or symbols appended (`password123!`).
 * An operator who needs a full breached-password check should add one (for instance a
 * k-anonymity range lookup or a local copy of a large corpus) in front of this list; Ward
 * ships none because it makes no outbound calls and bundles no third-party data set.
 */
export const commonPasswords: ReadonlySet<string> = new Set(
  `
password passw0rd p@ssw0rd p@ssword pa55word password1 passwort motdepasse contraseña
123456 1234567 12345678 123456789 1234567890 0123456789 987654321 9876543210 111111
11111111 000000 00000000 123123 123123123 112233 121212 123321 654321 666666 696969 7777777
88888888 159753 147258369 1q2w3e 1q2w3e4r 1q2w3e4r5t 1qaz2wsx qazwsx qazwsxedc zaq12wsx
qwerty qwerty1 qwerty12 qwerty123 qwertyuiop qwertz asdfgh asdfghjkl asdf1234 zxcvbnm
zxcvbn abc123 abcd1234 abcdef abcdefg abcdefgh aa123456 a1b2c3d4 iloveyou iloveu loveme
letmein welcome welcome1 admin admin123 administrator root toor login master
masterkey secret secret123 changeme changeit default guest test test123 testing temp
temp123 pass pass123 access access14 trustno1 whatever nothing freedom superman batman
spiderman ironman starwars pokemon naruto dragon monkey shadow sunshine princess football
baseball basketball soccer hockey jordan23 michael jennifer jessica ashley charlie
daniel thomas robert hunter ranger buster harley tigger killer pepper ginger maggie
summer winter flower cookie chocolate cheese banana orange purple silver golden
computer internet google facebook linkedin twitter samsung apple microsoft windows
hello hello123 hellohello goodbye lovely family friends forever blessed angel
mustang corvette ferrari porsche mercedes yankees cowboys liverpool chelsea arsenal
hospital medical doctor nurse health healthcare patient clinic pharmacy insulin
qwerty12345 password12 password123 password1234 myspace1 aaaaaa aaaaaaaa abc12345
sample example letmein1 iloveyou1 princess1 sunshine1 monkey123 dragon123 football1
superstar rockstar whatsup matrix mercury phoenix diamond crystal
`
    .split(/\s+/)
    .filter((entry) => entry.length > 0),
)
